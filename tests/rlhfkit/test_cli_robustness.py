"""No traceback reaches a user: damaged stores, odd names, bad options and every --help give a clear message."""

from __future__ import annotations

import json

import click
import pytest
import typer
from typer.testing import CliRunner

from preference.store import PreferenceStore
from rlhfkit.cli.main import app

runner = CliRunner()
ROW = {"prompt": "Q", "response_a": "yes", "response_b": "no", "label": "a", "annotator": "u", "source": "s"}


def run(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def clean_failure(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert text in " ".join(result.output.split()), result.output  # Rich wraps long lines


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def all_commands(command: click.Command, prefix=()):
    yield prefix
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from all_commands(sub, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands(typer.main.get_command(app))))
def test_every_help_renders(path):
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_markup_in_names_is_printed_not_interpreted(tmp_path):
    clean_failure(run("data", "validate", tmp_path / "x[/red].jsonl"), "x[/red].jsonl")


def test_import_refuses_a_folder_holding_other_files(tmp_path):
    folder = tmp_path / "mine"
    (folder / "data").mkdir(parents=True)
    precious = folder / "data" / "part-00000-abc.parquet"
    precious.write_bytes(b"user data")
    clean_failure(run("data", "import", write(tmp_path / "p.jsonl", [ROW]), "--store", folder),
                  "not a preference store")
    assert precious.read_bytes() == b"user data"


@pytest.mark.parametrize("damage,text", [
    (lambda s: next((s / "data").iterdir()).unlink(), "is missing"),
    (lambda s: (s / "store.json").write_text("[1, 2]"), "not an rlhfkit preference store"),
    (lambda s: (s / "store.json").write_text('{"format": "rlhfkit-preferences"}'), "shard list is damaged"),
    (lambda s: next((s / "data").iterdir()).write_bytes(b"PAR1 garbage PAR1"), "cannot be read"),
])
def test_damaged_stores_give_clear_errors(tmp_path, damage, text):
    store = tmp_path / "s"
    assert run("data", "import", write(tmp_path / "p.jsonl", [ROW]), "--store", store).exit_code == 0
    damage(store)
    for command in (("data", "stats", store), ("data", "export", store, "--out", tmp_path / "o.jsonl")):
        clean_failure(run(*command), text)


def test_export_with_no_rows_keeps_the_previous_output(tmp_path):
    store = tmp_path / "s"
    run("data", "import", write(tmp_path / "p.jsonl", [ROW]), "--store", store)
    out = tmp_path / "good.jsonl"
    assert run("data", "export", store, "--out", out).exit_code == 0
    before = out.read_text()
    only_ties = write(tmp_path / "t.jsonl", [{**ROW, "label": "tie"}])  # ties are dropped by default: no rows
    clean_failure(run("data", "export", only_ties, "--out", out), "was not written")
    assert out.read_text() == before


def test_option_values_are_checked(tmp_path):
    path = write(tmp_path / "p.jsonl", [ROW])
    clean_failure(run("data", "import", path, "--store", tmp_path / "s", "--map", "promt=question"),
                  "unknown rlhfkit field(s) promt")
    clean_failure(run("data", "export", path, "--out", tmp_path / "o.jsonl", "--min-agreement", "5"), "between 0 and 1")
    clean_failure(run("data", "validate", path, "--max-line-mb", "-1"), "must be positive")


def test_reimport_is_idempotent_and_edits_are_counted(tmp_path):
    path = write(tmp_path / "p.jsonl", [ROW, {**ROW, "prompt": "Q2"}])
    store = tmp_path / "s"
    assert run("data", "import", path, "--store", store).exit_code == 0
    result = run("data", "import", path, "--store", store)
    assert result.exit_code == 0 and len(PreferenceStore(store).shard_paths()) == 1
    assert "unchanged │ 2" in " ".join(result.output.split()).replace("│ │", "│")
    result = run("data", "import", write(tmp_path / "e.jsonl", [{**ROW, "label": "b"}]), "--store", store)
    assert "replace an earlier judgment │ 1" in " ".join(result.output.split())
    assert {r.label.value for r in PreferenceStore(store).records() if r.prompt == "Q"} == {"b"}


def test_quarantine_files_never_overwrite_each_other(tmp_path):
    store = tmp_path / "s"
    for i in range(3):
        path = write(tmp_path / "p.jsonl", [{**ROW, "prompt": f"Q{i}"}, {**ROW, "label": "?"}])
        assert run("data", "import", path, "--store", store, "--on-error", "quarantine").exit_code == 0
    assert len(list((store / "quarantine").iterdir())) == 3


def test_an_import_with_no_valid_rows_still_leaves_a_store(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("prompt,response_a,response_b,label,annotator,source\n")
    assert run("data", "import", path, "--store", tmp_path / "s").exit_code == 0
    assert PreferenceStore.is_store(tmp_path / "s") and len(PreferenceStore(tmp_path / "s")) == 0


def test_split_names_and_existing_outputs(tmp_path):
    store = tmp_path / "s"
    run("data", "import", write(tmp_path / "p.jsonl", [{**ROW, "prompt": f"Q{i}"} for i in range(10)]), "--store",
        store)
    clean_failure(run("data", "split", store, "--out", tmp_path / "o", "--ratio", "../escape=1"), "plain folder names")
    assert not (tmp_path / "escape").exists()
    assert run("data", "split", store, "--out", tmp_path / "o").exit_code == 0
    clean_failure(run("data", "split", store, "--out", tmp_path / "o"), "already exist")


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, monkeypatch):
    import preference.importers as importers

    clean_failure(run("data", "import", tmp_path / "missing.jsonl", "--store", tmp_path / "store"), "missing.jsonl")
    data = write(tmp_path / "prefs.jsonl", [ROW])

    # A ValueError that rlhfkit did not raise on purpose is a bug: the traceback must reach the user.
    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setitem(importers.READERS, "rlhfkit", broken)
    result = run("data", "import", data, "--store", tmp_path / "store2")
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError) and "an internal invariant broke" in str(result.exception)
    assert "error:" not in result.output


def test_a_training_run_is_quiet_unless_verbose(tmp_path):
    """The real command in its own process (the quiet settings apply before transformers is imported)."""
    import subprocess
    import sys

    from tests.tiny_models import save_tiny, tiny_encoder

    model, tokenizer = tiny_encoder(hidden_size=32, num_layers=1)
    backbone = save_tiny(model, tokenizer, tmp_path / "backbone")
    rows = [{"prompt": f"item {i}", "response_a": f"word {i} thanks", "response_b": f"word {i} rude", "label": "a",
             "annotator": "r"} for i in range(16)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = [sys.executable, "-m", "rlhfkit", "reward", "train", str(tmp_path / "p.jsonl"), "--model",
               str(backbone), "--epochs", "1", "--max-length", "64", "--batch-size", "8", "--logging-steps", "1"]
    quiet = subprocess.run([*command, "-o", str(tmp_path / "q")], capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr
    said = quiet.stdout + quiet.stderr
    for noise in ("FutureWarning", "pin_memory", "MISSING", "LOAD REPORT", "{'loss'", "train_runtime",
                  "Loading weights"):
        assert noise not in said, noise
    assert "100%" in said and "reward model trained" in said  # the progress bar and the summary stay
    loud = subprocess.run([*command[:3], "-v", *command[3:], "-o", str(tmp_path / "v")],
                          capture_output=True, text=True, timeout=600)
    assert loud.returncode == 0 and "DEBUG" in loud.stderr  # -v: the debug logs too


def test_ctrl_c_says_how_to_resume_and_version_prints(tmp_path, monkeypatch):
    import preference.importers as importers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setitem(importers.READERS, "rlhfkit", interrupted)
    result = run("data", "import", write(tmp_path / "prefs.jsonl", [ROW]), "--store", tmp_path / "store")
    assert result.exit_code == 130 and "rerun the same command to resume" in result.output
    assert "Traceback" not in result.output
    shown = run("--version")
    assert shown.exit_code == 0 and shown.output.startswith("rlhfkit ")
