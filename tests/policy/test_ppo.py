"""rlhfkit's PPO (actor-critic) on a tiny policy: the reward rises while KL stays bounded; resume; two processes."""

from __future__ import annotations

import json
import logging
import math
import shutil

import pytest

from policy.model import load_policy
from policy.ppo import PPOTrainingConfig, train_ppo
from policy.prompts import builtin_prompts
from policy.sft import SFTTrainingConfig, train_sft
from tests.policy_support import tiny_policy, torchrun_rlhfkit

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def warm_policy(tmp_path_factory) -> str:
    """A tiny policy that answers 'sure thing.' or 'SURE THING.' about equally often: a reward has something to
    choose between (a random tiny model spreads its probability over 49k tokens, too thin for a few updates)."""
    folder = tmp_path_factory.mktemp("warm")
    base = tiny_policy(folder / "base")
    rows = [{"prompt": item.prompt, "completion": answer} for item in builtin_prompts(16)
            for answer in ("sure thing.", "SURE THING.")]
    summary = train_sft(rows, SFTTrainingConfig(model=base, output_dir=str(folder / "sft"), lora=False, max_steps=40,
                                                learning_rate=1e-2, per_device_train_batch_size=8, save_steps=1000))
    return summary["final_model"]


def shouting(prompts, completions, **_):
    """The programmatic reward: the share of upper-case letters in the answer."""
    scores = []
    for completion in completions:
        letters = [c for c in completion[0]["content"] if c.isalpha()]
        scores.append(sum(c.isupper() for c in letters) / max(1, len(letters)))
    return scores


def config(policy: str, out, **overrides) -> PPOTrainingConfig:
    settings = dict(model=policy, output_dir=str(out), updates=30, per_device_train_batch_size=8, mini_batch_size=4,
                    max_completion_length=8, learning_rate=3e-3, logging_steps=10, save_steps=10, seed=0)
    return PPOTrainingConfig(**{**settings, **overrides})


def test_reward_rises_while_kl_stays_bounded(warm_policy, tmp_path):
    summary = train_ppo(builtin_prompts(16), config(warm_policy, tmp_path / "ppo"), extra_rewards=[shouting])
    history = json.loads((tmp_path / "ppo" / "train_log.json").read_text())
    scores = [entry["score"] for entry in history]
    assert len(history) == 30 == summary["updates"]
    assert sum(scores[-10:]) / 10 > sum(scores[:5]) / 5 + 0.15
    assert max(entry["kl"] for entry in history) < 10.0  # nats per answer of at most 8 tokens
    for key in ("value_loss", "explained_variance", "clipfrac", "entropy", "kl_coef", "approx_kl"):
        assert key in history[-1]
    assert (tmp_path / "ppo" / "curves.png").stat().st_size > 0
    assert (tmp_path / "ppo" / "critic" / "adapter_config.json").is_file()
    model, tokenizer = load_policy(summary["final_model"])  # the LoRA policy loads merged
    assert model.config.vocab_size == len(tokenizer)


def test_adaptive_kl_and_eos_penalty_full_finetuning(warm_policy, tmp_path):
    summary = train_ppo(builtin_prompts(8), config(warm_policy, tmp_path / "ppo", updates=3, lora=False,
                                                   adaptive_kl=True, kl_target=0.01, missing_eos_penalty=1.0),
                        extra_rewards=[shouting])
    history = json.loads((tmp_path / "ppo" / "train_log.json").read_text())
    assert history[-1]["kl_coef"] != 0.05  # the controller moved it
    assert (tmp_path / "ppo" / "model" / "model.safetensors").is_file() and summary["lora"] is False


def test_interrupted_ppo_resumes_from_the_last_checkpoint(warm_policy, tmp_path, caplog):
    out = tmp_path / "ppo"
    train_ppo(builtin_prompts(16), config(warm_policy, out, updates=2, save_steps=2), extra_rewards=[shouting])
    for produced in ("model", "critic", "summary.json", "train_log.json"):  # as if killed after the checkpoint
        shutil.rmtree(out / produced) if (out / produced).is_dir() else (out / produced).unlink()
    with caplog.at_level(logging.INFO, logger="policy.ppo"):
        train_ppo(builtin_prompts(16), config(warm_policy, out, updates=4, save_steps=2, resume=True),
                  extra_rewards=[shouting])
    assert any("resuming from" in r.message and "step-2" in r.message for r in caplog.records)
    assert [e["step"] for e in json.loads((out / "train_log.json").read_text())] == [1, 2, 3, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]


def test_a_critic_that_cannot_read_the_policy_tokens_is_refused(warm_policy, tmp_path):
    out = tmp_path / "ppo"
    with pytest.raises(ValueError, match="must read the policy's tokens"):
        train_ppo(builtin_prompts(4), config(warm_policy, out, updates=1, critic_model="minilm-l6"),
                  extra_rewards=[shouting])
    # The failed start left only config.json: the corrected run may use the same folder.
    train_ppo(builtin_prompts(4), config(warm_policy, out, updates=1, per_device_train_batch_size=4),
              extra_rewards=[shouting])
    assert (out / "model").is_dir()


def test_bad_ppo_settings_fail_before_work(tmp_path):
    with pytest.raises(ValueError, match="mini_batch_size"):
        train_ppo(builtin_prompts(2), PPOTrainingConfig(output_dir=str(tmp_path / "x"), per_device_train_batch_size=2,
                                                        mini_batch_size=4, verifier="loose"))
    with pytest.raises(ValueError, match="no reward"):
        train_ppo(builtin_prompts(2), PPOTrainingConfig(output_dir=str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()


def test_ppo_from_the_command_line_on_two_processes(warm_policy, tmp_path):
    done = torchrun_rlhfkit(["policy", "rl", "--algo", "ppo", "-o", "ppo", "--model", warm_policy, "--prompts",
                             "builtin:8", "--verifier", "loose", "--updates", "2", "--batch-size", "4",
                             "--max-completion-length", "6"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "ppo" / "train_log.json").read_text())
    assert [e["step"] for e in history] == [1, 2]
    assert done.stdout.count("PPO: ppo") == 1
    load_policy(str(tmp_path / "ppo" / "model"))


@pytest.mark.integration
def test_ppo_on_the_bundled_smollm2_with_lora(tmp_path, monkeypatch):
    """As the README runs it: the real SmolLM2-135M-Instruct, LoRA policy and critic, the IFEval verifier reward."""
    from typer.testing import CliRunner

    from rlhfkit.cli.main import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["policy", "rl", "--algo", "ppo", "-o", "ppo", "--prompts", "builtin:4",
                                      "--verifier", "loose", "--updates", "2", "--batch-size", "2",
                                      "--max-completion-length", "24"])
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "ppo" / "train_log.json").read_text())
    assert len(history) == 2 and all(math.isfinite(e["value_loss"]) for e in history)
    assert history[0]["example"].strip()  # the real model answers in words
    assert json.loads((tmp_path / "ppo" / "model" / "adapter_config.json").read_text())["r"] == 16
