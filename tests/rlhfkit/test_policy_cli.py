"""`rlhfkit policy ...` as a user runs it: generate -> pairs -> verifier labels -> DPO -> eval; bad input; two
processes under torchrun (gloo) for DPO and reward training; one real SmolLM2 round with LoRA."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from preference.store import PreferenceStore
from rlhfkit.cli.main import app
from tests.policy_support import easy_preferences, tiny_policy, torchrun_rlhfkit

runner = CliRunner()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    return tiny_policy(tmp_path_factory.mktemp("policy") / "tiny")


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_generate_label_dpo_eval_from_the_command_line(policy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    invoke("policy", "generate", "-o", "cands.jsonl", "--prompts", "builtin:8", "--model", policy_dir, "-k", "3",
           "--max-new-tokens", "8")
    invoke("policy", "pairs", "cands.jsonl", "-o", "pairs.jsonl", "--strategy", "all")
    assert len((tmp_path / "pairs.jsonl").read_text().splitlines()) == 24
    invoke("annotate", "label", "pairs.jsonl", "--store", "prefs", "--annotator", "verifier")
    assert len(list(PreferenceStore(tmp_path / "prefs").records())) == 24
    # Random tiny answers rarely follow instructions: add easy judgments so DPO has decisive pairs.
    PreferenceStore(tmp_path / "prefs").append(easy_preferences(8))
    result = invoke("policy", "dpo", "prefs", "-o", "dpo", "--model", policy_dir, "--max-steps", "2",
                    "--ties", "margin0", "--loss-type", "sigmoid", "--loss-type", "sft")
    assert "training pairs" in result.output
    summary = json.loads((tmp_path / "dpo" / "summary.json").read_text())
    assert summary["export"]["kept"]["a"] + summary["export"]["kept"].get("b", 0) >= 8
    result = invoke("policy", "eval", "dpo/model", "-o", "ev", "--reference", policy_dir, "--prompts", "builtin:8",
                    "--max-new-tokens", "6")
    assert "pass rate, prompt loose" in result.output
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["verifier"]["n_prompts"] == 8 and "verifier_delta" in report


def test_bad_input_gives_one_clear_line(policy_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    result = runner.invoke(app, ["policy", "generate", "-o", "c.jsonl", "--prompts", "bad.jsonl", "--model",
                                 policy_dir])
    assert result.exit_code == 1 and "bad.jsonl" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["policy", "rl", "--model", policy_dir, "--prompts", "builtin:4"])
    assert result.exit_code == 1 and "no reward" in result.output
    result = runner.invoke(app, ["policy", "dpo", "missing-store", "--model", policy_dir])
    assert result.exit_code == 1 and "missing-store" in result.output
    result = runner.invoke(app, ["policy", "generate", "-o", "c.jsonl", "--model", "no-such-model"])
    assert result.exit_code == 1 and "unknown model" in result.output
    result = runner.invoke(app, ["policy", "rl", "--algo", "grpo", "--verifier", "loose", "--updates", "3"])
    assert result.exit_code == 1 and "--updates only apply to --algo ppo" in result.output
    result = runner.invoke(app, ["policy", "dpo", "x", "--loss-type", "exo_pair"])
    assert result.exit_code == 1 and "label_smoothing" in result.output


def test_dpo_and_reward_training_on_two_processes(policy_dir, tmp_path):
    from tests.tiny_models import save_tiny, tiny_encoder

    store = tmp_path / "prefs"
    PreferenceStore(store).append(easy_preferences(16))
    done = torchrun_rlhfkit(["policy", "dpo", str(store), "-o", "dpo", "--model", policy_dir, "--max-steps", "2",
                      "--batch-size", "4"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "dpo" / "train_log.json").read_text())
    # 16 pairs, 4 per process per step, 2 processes: each step covers half the data.
    assert history[-1]["epoch"] == pytest.approx(1.0)
    assert done.stdout.count("training pairs") == 1  # one process reports
    from policy.model import load_policy

    load_policy(str(tmp_path / "dpo" / "model"))

    model, tokenizer = tiny_encoder(seed=2)
    backbone = str(save_tiny(model, tokenizer, tmp_path / "encoder"))
    done = torchrun_rlhfkit(["reward", "train", str(store), "-o", "rm", "--model", backbone, "--epochs", "1",
                      "--batch-size", "4"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "rm" / "train_log.json").read_text())
    assert max(e["step"] for e in history if "step" in e) == 2  # 16 pairs / (4 x 2 processes)
    from reward.model import load_reward_model

    assert len(load_reward_model(tmp_path / "rm" / "model").score(["q"], ["a"])) == 1


@pytest.mark.integration
def test_real_smollm2_generate_dpo_eval_with_lora(tmp_path, monkeypatch):
    """The bundled SmolLM2-135M-Instruct: sample, label with the verifier, one DPO step with LoRA, evaluate."""
    monkeypatch.chdir(tmp_path)
    invoke("policy", "generate", "-o", "cands.jsonl", "--prompts", "builtin:4", "-k", "2", "--max-new-tokens", "24")
    rows = [json.loads(line) for line in (tmp_path / "cands.jsonl").read_text().splitlines()]
    assert all(any(c.strip() for c in r["candidates"]) for r in rows)  # a real model says something
    invoke("policy", "pairs", "cands.jsonl", "-o", "pairs.jsonl")
    invoke("annotate", "label", "pairs.jsonl", "--store", "prefs", "--annotator", "verifier")
    PreferenceStore(tmp_path / "prefs").append(easy_preferences(4))
    invoke("policy", "dpo", "prefs", "-o", "dpo", "--max-steps", "1", "--batch-size", "2", "--max-length", "256")
    adapter = json.loads((tmp_path / "dpo" / "model" / "adapter_config.json").read_text())
    assert adapter["r"] == 16
    invoke("policy", "eval", "dpo/model", "-o", "ev", "--prompts", "builtin:3", "--max-new-tokens", "16")
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["verifier"]["n_prompts"] == 3
