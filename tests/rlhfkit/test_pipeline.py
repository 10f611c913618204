"""`rlhfkit run`: the whole loop on tiny models in a temp folder, killed mid-stage and resumed; config errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rlhfkit.cli.main import app
from rlhfkit.pipeline.config import ConfigError, PipelineConfig, default_yaml, load_config
from rlhfkit.pipeline.stages import STAGES
from tests.labelstudio_support import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.policy_support import tiny_policy
from tests.tiny_models import save_tiny, tiny_encoder

REPO = Path(__file__).resolve().parents[2]


def tiny_config(tmp: Path, **sections) -> dict:
    """A config that runs every stage on tiny random models in a few seconds each."""
    policy = tiny_policy(tmp / "policy-model", seed=1)
    encoder, tokenizer = tiny_encoder(seed=2)
    backbone = str(save_tiny(encoder, tokenizer, tmp / "reward-backbone"))
    config = {
        "workdir": str(tmp / "work"),
        "policy": {"model": policy},
        "prompts": {"train": 40, "heldout": 6},
        "generate": {"num_candidates": 3, "max_new_tokens": 24, "batch_size": 1},
        "reward": {"model": backbone, "num_train_epochs": 1, "max_length": 96},
        "update": {"dpo": {"max_steps": 3, "per_device_train_batch_size": 2, "max_length": 128}},
        "evaluate": {"max_new_tokens": 12, "n_bootstrap": 50, "examples": 2},
        "dspy": {"prompts": 2, "max_new_tokens": 8},
        "instructions": {"prompts": 6, "budget": 30, "population_size": 2, "generations": 1, "elite": 1,
                         "lm": "none",
                         "max_new_tokens": 8},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def rlhfkit(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "rlhfkit", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def manifest(work: Path) -> dict:
    return json.loads((work / "manifest.json").read_text())


def test_whole_loop_killed_mid_stage_resumes_and_repeats_no_finished_stage(tmp_path):
    config = tiny_config(tmp_path)
    path = write(tmp_path / "run.yaml", config)
    work = Path(config["workdir"])
    partial = work / "generate" / "candidates.jsonl.partial"

    # Kill the job (SIGKILL: no clean-up of any kind) once generation has written some, not all, answers.
    process = rlhfkit("run", "--config", str(path))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(60)
    assert process.returncode == -signal.SIGKILL, process.stdout.read()
    killed = manifest(work)
    assert list(killed["stages"]) == ["prompts"]  # generation was cut short, so it is not recorded as done
    answered_before = len(partial.read_text().splitlines())
    assert 3 <= answered_before < 40

    process = rlhfkit("run", "--config", str(path))
    output = process.communicate(timeout=900)[0]
    assert process.returncode == 0, output
    done = manifest(work)
    assert list(done["stages"]) == list(STAGES)
    assert done["stages"]["prompts"] == killed["stages"]["prompts"]  # not run again
    rows = [json.loads(line) for line in (work / "generate" / "candidates.jsonl").read_text().splitlines()]
    train = [json.loads(line)["metadata"]["key"] for line in (work / "prompts" / "train.jsonl").read_text()
             .splitlines()]
    assert sorted(row["key"] for row in rows) == sorted(train)  # every prompt answered once: none lost or doubled
    assert all(len(row["candidates"]) == 3 for row in rows)

    metrics = json.loads((work / "metrics.json").read_text())
    assert set(metrics["timings_s"]) == set(STAGES)
    assert metrics["label"]["judgments"] > 0 and metrics["evaluate"]["prompts"] == 6
    assert set(metrics["dspy"]) == {"before", "after"}
    assert (work / "update" / "model" / "adapter_config.json").exists()  # the LoRA policy the later stages used
    report = (work / "report.html").read_text()
    assert "Policy before and after" in report and "data:image/png;base64," in report
    assert "http://" not in report and "https://" not in report  # self-contained: nothing fetched when opened

    # A finished run reruns nothing; --from reruns that stage and the later ones only.
    result = CliRunner().invoke(app, ["run", "--config", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert manifest(work)["stages"] == done["stages"]
    searched = (work / "instructions" / "result.json").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["run", "--config", str(path), "--from", "instructions"], terminal_width=200)
    assert result.exit_code == 0, result.output
    again = manifest(work)["stages"]
    assert all(again[name] == done["stages"][name] for name in list(STAGES)[:7])
    assert (work / "instructions" / "result.json").stat().st_mtime_ns > searched  # searched again

    # Another config on the same folder is refused, naming the first stage it changes and the way forward.
    config["reward"]["num_train_epochs"] = 2
    result = CliRunner().invoke(app, ["run", "--config", str(write(path, config))], terminal_width=200)
    assert result.exit_code == 1
    assert "'reward'" in result.output and "--from reward" in result.output
    assert manifest(work)["stages"]["reward"] == again["reward"]

    # The reward stage's interval uses evaluate.n_bootstrap: changing it must not leave that interval stale.
    config["reward"]["num_train_epochs"] = 1
    config["evaluate"]["n_bootstrap"] = 60
    assert again["reward"]["reads"]["evaluate.n_bootstrap"] == 50
    result = CliRunner().invoke(app, ["run", "--config", str(write(path, config))], terminal_width=200)
    assert result.exit_code == 1 and "'reward'" in result.output, result.output


def test_bad_config_fails_before_any_work_naming_file_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"workdir: {tmp_path / 'work'}\n"
                    "prompts:\n"
                    "  train: many\n"
                    "reward:\n"
                    "  learning_rat: 0.001\n"
                    "label:\n"
                    "  annotator: file\n")
    result = CliRunner().invoke(app, ["run", "--config", str(path)], terminal_width=300)
    assert result.exit_code == 1
    assert f"{path}:3: prompts.train" in result.output
    assert f"{path}:5: reward.learning_rat: unknown key" in result.output and "learning_rate" in result.output
    assert "label.file" in result.output
    assert not (tmp_path / "work").exists()

    with pytest.raises(ConfigError, match="label.file: .*missing.jsonl does not exist"):
        load_config(write(tmp_path / "c.yaml", {"label": {"annotator": "file", "file": "missing.jsonl"}}))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=":1: the config must be a mapping"):
        load_config(write(tmp_path / "list.yaml", [1, 2]))


def test_missing_model_is_a_clear_error_before_any_work(tmp_path):
    config = {"workdir": str(tmp_path / "work"), "policy": {"model": str(tmp_path / "no-such-model")}}
    result = CliRunner().invoke(app, ["run", "--config", str(write(tmp_path / "c.yaml", config))],
                                terminal_width=300)
    assert result.exit_code == 1
    assert "policy.model" in result.output
    assert not (tmp_path / "work").exists()


def test_default_config_documents_every_field_and_reads_back():
    text = default_yaml()
    assert load_config(None) == PipelineConfig()
    parsed = yaml.safe_load(text)
    assert PipelineConfig.model_validate(parsed) == PipelineConfig()

    def undocumented(model) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(name)
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                missing += [f"{name}.{sub}" for sub in undocumented(annotation)]
        return missing

    assert undocumented(PipelineConfig) == []
    result = CliRunner().invoke(app, ["run", "--show-config"], terminal_width=200)
    assert result.exit_code == 0 and "annotator: verifier" in result.output


@requires_chromium()
def test_report_opens_in_headless_chromium_with_every_plot(tmp_path):
    """A report made from a finished tiny run renders offline: every embedded plot decodes, no console errors."""
    from playwright.sync_api import sync_playwright

    config = tiny_config(tmp_path, generate={"batch_size": 8})
    result = CliRunner().invoke(app, ["run", "--config", str(write(tmp_path / "run.yaml", config))],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    report = Path(config["workdir"]) / "report.html"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(report.resolve().as_uri())
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
        title = page.title()
        headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
        browser.close()
    assert title.startswith("rlhfkit run")
    assert len(widths) >= 3 and all(width > 0 for width in widths)  # reward, pass rates, curves (+ search)
    assert {"Reward model", "Policy before and after", "DSPy scoring", "Instruction search"} <= set(headings)
    assert errors == []


def test_a_full_disk_is_reported_as_such():
    from rlhfkit.cli.main import error_message

    message = error_message(OSError(errno.ENOSPC, "No space left on device", "/runs/main/policy/model"))
    assert message.startswith("the disk is full (/runs/main/policy/model)") and "run the same command again" in message
    assert error_message(ValueError("bad value")) == "bad value"


def test_online_updates_grpo_then_ppo_against_the_run_s_reward_model(tmp_path):
    """GRPO, then (config changed, rerun --from update) PPO: both rewarded by the run's own reward model."""
    grpo = {"max_steps": 1, "num_generations": 3, "per_device_train_batch_size": 6, "max_completion_length": 24}
    config = tiny_config(tmp_path, generate={"batch_size": 8}, update={"method": "grpo", "rl": grpo},
                         instructions={"enabled": False})
    path = write(tmp_path / "run.yaml", config)
    work = Path(config["workdir"])
    result = CliRunner().invoke(app, ["run", "--config", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    first = manifest(work)["stages"]
    assert first["update"]["result"]["method"] == "grpo"
    assert json.loads((work / "update" / "summary.json").read_text())["method"] == "grpo"
    assert first["instructions"]["result"] == {"skipped": "instructions.enabled is false"}

    ppo = {"max_steps": 1, "per_device_train_batch_size": 2, "max_completion_length": 24}
    config["update"] = {"method": "ppo", "ppo": ppo}
    result = CliRunner().invoke(app, ["run", "--config", str(write(path, config)), "--from", "update"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    second = manifest(work)["stages"]
    assert all(second[name] == first[name] for name in ("prompts", "generate", "label", "reward"))
    assert second["update"]["result"]["method"] == "ppo"
    assert json.loads((work / "update" / "summary.json").read_text())["method"] == "ppo"
    assert (work / "report.html").exists()


def test_model_folders_in_a_config_are_relative_to_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    policy = tiny_policy(folder / "models" / "policy")
    path = write(folder / "run.yaml", {"policy": {"model": "./models/policy"}, "instructions": {"lm": "none"}})
    monkeypatch.chdir(tmp_path)  # run from elsewhere
    assert load_config(path).policy.model == str(Path(policy).resolve())
    assert load_config(path).reward.model == "minilm-l6"  # bundled names stay names


def test_a_stage_records_the_settings_it_reads_and_only_their_change_reruns_it(tmp_path):
    from rich.console import Console

    from rlhfkit.pipeline.runner import first_changed_stage
    from rlhfkit.pipeline.stages import Context, prompts

    config = load_config(None, {"workdir": str(tmp_path / "work"), "prompts.train": 4, "prompts.heldout": 2})
    ctx = Context(settings=config, work=tmp_path / "work", base=tmp_path, console=Console(quiet=True))
    prompts(ctx)
    assert ctx.reads == {"prompts.source": "builtin", "prompts.train": 4, "prompts.heldout": 2, "seed": 0,
                         "prompts.constraints": list(config.prompts.constraints)}
    with pytest.raises(AttributeError, match="read-only"):
        ctx.config.prompts.train = 5

    settings = config.model_dump(mode="json")
    run = {"config": settings, "stages": {"prompts": {"reads": ctx.reads}}}
    changed = load_config(None, {"workdir": "elsewhere", "prompts.train": 4, "prompts.heldout": 2,
                                 "reward.num_train_epochs": 1}).model_dump(mode="json")
    assert first_changed_stage(run, settings) is None
    assert first_changed_stage(run, changed) == "generate"  # the next stage: nothing says what it would read
    # An interrupted generation that read other settings resumes; one that read a changed setting starts again.
    assert first_changed_stage({**run, "partial": {"stage": "generate", "reads": {"generate.num_candidates": 4}}},
                               changed) is None
    assert first_changed_stage({**run, "partial": {"stage": "generate", "reads": {"generate.num_candidates": 4}}},
                               {**changed, "generate": {**changed["generate"], "num_candidates": 5}}) == "generate"
    assert first_changed_stage(run, {**changed, "seed": 1}) == "prompts"
