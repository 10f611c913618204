"""`rlhfkit data ...` as a user runs it: exit codes, messages naming file/line/field, outputs that load."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from preference.store import PreferenceStore
from rlhfkit.cli.main import app
from tests.conftest import HH_PATH, PANDALM_PATH, needs

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


ROW = {"prompt": "Q", "response_a": "yes", "response_b": "no", "label": "a", "annotator": "u", "source": "s"}


@needs(PANDALM_PATH)
def test_stats_on_pandalm_prints_majority_and_agreement(tmp_path):
    result = run("data", "stats", PANDALM_PATH, "--json", tmp_path / "stats.json")
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["majority_counts"]["a"] == 422 and stats["majority_counts"]["b"] == 472
    assert stats["majority_counts"]["tie"] == 105 and stats["n_units"] == 999
    for name in ("fleiss kappa", "krippendorff alpha", "pairwise Cohen's kappa", "position bias"):
        assert name in result.output
    assert f"{stats['fleiss_kappa']:.3f}" in result.output
    assert f"{stats['krippendorff_alpha']:.3f}" in result.output
    for entry in stats["cohen_kappa"]:
        assert f"{entry['kappa']:.3f}" in result.output


@needs(HH_PATH)
def test_import_hh_reports_identical_and_differing_context_pairs(tmp_path):
    result = run("data", "import", HH_PATH, "--store", tmp_path / "hh")
    assert result.exit_code == 0, result.output
    assert len(PreferenceStore(tmp_path / "hh")) == 2354
    assert re.search(r"flagged identical_responses\s*│\s*2\s*│", result.output)
    assert "differs from chosen's" in result.output and "test.jsonl.gz:722" in result.output


def test_validate_lists_every_problem_and_exits_nonzero(tmp_path):
    path = write_rows(tmp_path / "p.jsonl", [ROW, {**ROW, "label": "maybe"}, {**ROW, "response_b": None},
                                             {**ROW, "prompt": ""}])
    result = run("data", "validate", path)
    assert result.exit_code == 1
    for where, field in (("p.jsonl:2", "label"), ("p.jsonl:3", "response_b"), ("p.jsonl:4", "prompt")):
        assert any(where in line and field in line for line in result.output.splitlines()), (where, result.output)
    assert "4 rows, 1 valid, 3 with errors" in result.output


def test_import_fails_cleanly_then_quarantines(tmp_path):
    path = write_rows(tmp_path / "p.jsonl", [ROW, {**ROW, "label": "maybe"}])
    result = run("data", "import", path, "--store", tmp_path / "s")
    assert result.exit_code == 1 and "nothing was imported" in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a traceback
    assert not PreferenceStore.is_store(tmp_path / "s")
    result = run("data", "import", path, "--store", tmp_path / "s", "--on-error", "quarantine")
    assert result.exit_code == 0 and len(PreferenceStore(tmp_path / "s")) == 1
    (quarantine,) = (tmp_path / "s" / "quarantine").iterdir()
    assert json.loads(quarantine.read_text())["issues"][0]["field"] == "label"


def test_missing_file_and_unknown_format_are_clear_errors(tmp_path):
    # A long path: an error message must stay one line however long (Rich wraps at 80 columns off a terminal).
    result = run("data", "validate", tmp_path / ("d" * 90) / "nope.jsonl")
    assert result.exit_code == 1 and "nope.jsonl: no such file" in result.output
    result = run("data", "import", write_rows(tmp_path / "p.jsonl", [ROW]), "--store", tmp_path / "s",
                 "--format", "xml")
    assert result.exit_code == 1 and "unknown format 'xml'" in result.output


def test_split_then_export_round_trip(tmp_path):
    rows = [{**ROW, "prompt": f"Q{i}", "label": "ab"[i % 2], "strength": "strong"} for i in range(20)]
    path = write_rows(tmp_path / "p.jsonl", rows)
    assert run("data", "import", path, "--store", tmp_path / "s").exit_code == 0
    result = run("data", "split", tmp_path / "s", "--out", tmp_path / "splits", "--ratio", "train=0.75",
                 "--ratio", "test=0.25")
    assert result.exit_code == 0, result.output
    sizes = {name: len(PreferenceStore(tmp_path / "splits" / name)) for name in ("train", "test")}
    assert sizes == {"train": 15, "test": 5}
    result = run("data", "export", tmp_path / "splits" / "train", "--out", tmp_path / "train.jsonl", "--to", "dpo")
    assert result.exit_code == 0, result.output
    exported = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert len(exported) == 15 and all(row["margin"] == 2.0 for row in exported)
    result = run("data", "export", tmp_path / "s", "--out", tmp_path / "x.jsonl", "--to", "dpo", "--both-bad",
                 "negatives")
    assert result.exit_code == 1 and "KTO" in result.output


def test_a_file_without_annotators_validates_and_names_the_default(tmp_path):
    path = tmp_path / "my_prefs.jsonl"  # laid out as docs/data.md shows, no annotator column
    path.write_text("".join(json.dumps({"prompt": f"Say hi {i}", "response_a": "hi", "response_b": "go away",
                                        "label": "a"}) + "\n" for i in range(3)))
    result = CliRunner().invoke(app, ["data", "validate", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "3 valid" in result.output and "'unknown'" in result.output and "--annotator" in result.output
    assert result.output.count("recorded as") == 1  # said once, not per row
    store = tmp_path / "store"
    named = CliRunner().invoke(app, ["data", "import", str(path), "--store", str(store), "--annotator", "alice"],
                               terminal_width=200)
    assert named.exit_code == 0, named.output
    assert "recorded as" not in named.output
    assert {r.annotator for r in PreferenceStore(store).records()} == {"alice"}


def test_importing_a_copy_warns_that_its_pairs_are_judged_already(tmp_path):
    original = tmp_path / "prefs.jsonl"
    original.write_text("".join(json.dumps({"prompt": f"Q{i}?", "response_a": "yes", "response_b": "no",
                                            "label": "a", "annotator": "ann"}) + "\n" for i in range(4)))
    copy = tmp_path / "prefs (copy).jsonl"
    copy.write_bytes(original.read_bytes())
    store = str(tmp_path / "store")
    first = CliRunner().invoke(app, ["data", "import", str(original), "-s", store], terminal_width=200)
    assert first.exit_code == 0 and "already judged" not in first.output
    again = CliRunner().invoke(app, ["data", "import", str(copy), "-s", store], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "4 judgment(s) are of pairs their annotator already judged" in again.output and "prefs.jsonl" in again.output
    as_same = CliRunner().invoke(app, ["data", "import", str(copy), "-s", store, "--source", "prefs.jsonl"],
                                 terminal_width=200)
    assert as_same.exit_code == 0 and "already judged" not in as_same.output
    assert len(PreferenceStore(store)) == 8  # the first copy added 4; importing it as the original's source adds none
