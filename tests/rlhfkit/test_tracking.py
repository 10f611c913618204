"""Experiment tracking: `report_to` reaches TRL's trainers (reward, DPO) and accelerate (PPO), and the TensorBoard
event files they write read back with TensorBoard's own reader; bad tracker names fail before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from policy.config import DPOTrainingConfig, PPOTrainingConfig
from policy.dpo import train_dpo
from policy.ppo import train_ppo
from policy.prompts import builtin_prompts
from reward.config import RewardTrainingConfig
from reward.train import train_reward_model
from rlhfkit.cli.main import app
from rlhfkit.core.errors import ConfigError, SetupError
from rlhfkit.core.tracking import trackers
from tests.policy_support import easy_preferences, tiny_policy
from tests.tiny_models import save_tiny, tiny_encoder

pytestmark = pytest.mark.usefixtures("one_thread")


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar in the TensorBoard event files under `run_dir`, by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(run_dir.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {run_dir}"
    out: dict[str, list[float]] = {}
    for file in files:
        events = EventAccumulator(str(file))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            out.setdefault(tag, []).extend(event.value for event in events.Scalars(tag))
    return out


def test_reward_training_reports_its_losses_to_tensorboard(tmp_path):
    model, tokenizer = tiny_encoder(hidden_size=32, num_layers=1)
    backbone = save_tiny(model, tokenizer, tmp_path / "backbone")
    config = RewardTrainingConfig(model=str(backbone), output_dir=str(tmp_path / "rm"), max_length=64,
                                  num_train_epochs=1, per_device_train_batch_size=8, logging_steps=1,
                                  report_to=["tensorboard"], center_rewards_coefficient=None)
    train_reward_model(easy_preferences(32), config)
    logged = scalars(tmp_path / "rm")
    assert len(logged["train/loss"]) == 4  # 32 pairs, batch 8, a point per step
    assert "train/accuracy" in logged


def test_dpo_and_ppo_report_to_tensorboard(tmp_path):
    base = tiny_policy(tmp_path / "tiny")
    dpo = DPOTrainingConfig(model=base, output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=4,
                            logging_steps=1, save_steps=100, report_to=["tensorboard"])
    train_dpo(easy_preferences(8), dpo)
    assert len(scalars(tmp_path / "dpo")["train/rewards/margins"]) == 2

    ppo = PPOTrainingConfig(model=base, output_dir=str(tmp_path / "ppo"), updates=2, per_device_train_batch_size=4,
                            mini_batch_size=2, max_completion_length=4, logging_steps=1, save_steps=10,
                            report_to=["tensorboard"])
    train_ppo(builtin_prompts(4), ppo, extra_rewards=[lambda prompts, completions, **_: [1.0] * len(completions)])
    logged = scalars(tmp_path / "ppo")
    assert len(logged["score"]) == 2 and "kl" in logged and "value_loss" in logged

    from huggingface_hub import ModelCard  # both saved policies carry a Hub model card (LoRA: a PEFT adapter)

    for method in ("dpo", "ppo"):
        card = ModelCard.load(tmp_path / method / "model" / "README.md")
        assert card.data.library_name == "peft" and method in card.data.tags and "load_policy" in card.text


def test_bad_trackers_are_refused_before_any_work(tmp_path):
    assert trackers(["none"]) == [] and trackers("tensorboard") == ["tensorboard"]
    with pytest.raises(ConfigError, match="unknown tracker.*neptune"):
        RewardTrainingConfig(report_to=["neptune"]).validate()
    with pytest.raises(SetupError, match="needs the `mlflow` package.*pip install mlflow"):
        trackers(["mlflow"])  # not installed here: the message names the package
    result = CliRunner().invoke(app, ["reward", "train", "prefs.jsonl", "--report-to", "wandb", "-o",
                                      str(tmp_path / "x")], terminal_width=200)
    assert result.exit_code != 0 and "wandb" in result.output and "Traceback" not in result.output
