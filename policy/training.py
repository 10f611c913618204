"""What every policy trainer (SFT, DPO, GRPO/RLOO) shares: the common config fields, LoRA, TRL arguments, resume,
an atomic final save, and curves.

Each method has its own config dataclass that extends `PolicyTrainingConfig` and one function that runs TRL's
trainer (`policy.sft`, `policy.dpo`, `policy.rl`). All of them run unchanged under `accelerate launch` (DDP, FSDP,
DeepSpeed: see `configs/accelerate/`): TRL's trainers are accelerate programs, and only the main process writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from policy.config import PolicyTrainingConfig
from rlhfkit.core.atomic import atomic_path, atomic_write_text, swap_in_dir
from rlhfkit.core.callbacks import StopOnNonFiniteLoss, show_metrics_on_the_bar
from rlhfkit.core.run_dir import last_complete_checkpoint, prepare_run_dir
from rlhfkit.core.tracking import trackers

log = logging.getLogger(__name__)


def use_bf16(config: PolicyTrainingConfig) -> bool:
    if config.bf16 is not None:
        return config.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def trl_common_args(config: PolicyTrainingConfig) -> dict[str, Any]:
    """The TrainingArguments every TRL config here gets from `PolicyTrainingConfig`."""
    return {
        "output_dir": str(Path(config.output_dir) / "checkpoints"),
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "warmup_steps": config.warmup_ratio,  # transformers 5: a float below 1 is a share of the total steps
        "max_grad_norm": config.max_grad_norm,
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": use_bf16(config),
        "gradient_checkpointing": config.gradient_checkpointing,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": 2,
        "logging_steps": config.logging_steps,
        "report_to": trackers(config.report_to),
        "dataloader_num_workers": 0,
        "disable_tqdm": False,  # the bar stays when transformers' logs are quiet (its default hides it then)
    }


def peft_config(config: PolicyTrainingConfig) -> Any:
    if not config.lora:
        return None
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=config.lora_target_modules or "all-linear")


def prepare_output(config: PolicyTrainingConfig) -> Path:
    """The run folder, refusing to mix a new run into an old one unless resuming (every process calls this)."""
    return prepare_run_dir(config.output_dir, config.resume, dataclasses.asdict(config))


def callbacks() -> list[Any]:
    return [StopOnNonFiniteLoss()]


def train_and_save(trainer: Any, config: PolicyTrainingConfig, method: str, extra: dict[str, Any],
                   curve_keys: Sequence[str]) -> dict[str, Any]:
    """Train (resuming when asked), save the final policy atomically, write curves and the summary.

    Returns the summary written to `summary.json`."""
    out = Path(config.output_dir)
    checkpoints = out / "checkpoints"
    last = last_complete_checkpoint(checkpoints) if config.resume else None
    show_metrics_on_the_bar(trainer)
    if last:
        log.info("resuming from %s", last)
    result = trainer.train(resume_from_checkpoint=last)
    summary = {"method": method, "model": config.model, "final_model": str(out / "model"), "lora": config.lora,
               "train_metrics": result.metrics, **extra}
    accelerator = trainer.accelerator
    tmp = out / ".model.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # a save cut short earlier
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    # Every process: under FSDP / DeepSpeed the weights are sharded and Trainer.save_model gathers them. A LoRA run
    # saves its adapter (adapter_config.json points at the base); policy.model.load_policy loads either form.
    trainer.save_model(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trainer.processing_class.save_pretrained(tmp)
        atomic_write_text(tmp / "rlhfkit_policy.json", json.dumps(
            {"method": method, "base_model": config.model, "lora": config.lora,
             "system_prompt": config.system_prompt}, indent=1))
        write_policy_card(tmp, config, method, result.metrics, out / "model")
        swap_in_dir(tmp, out / "model")  # a half-written save never replaces a finished model
        history = trainer.state.log_history
        atomic_write_text(out / "train_log.json", json.dumps(history, indent=1))
        plot_curves(history, curve_keys, out / "curves.png", f"{method}: {config.model}")
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    trainer.accelerator.wait_for_everyone()
    return summary


def write_policy_card(folder: Path, config: PolicyTrainingConfig, method: str, metrics: dict[str, Any],
                      final: Path) -> None:
    """The model card of a saved policy or adapter (`final`: where the folder ends up)."""
    from rlhfkit.models.card import write_model_card

    usage = (f'from policy.model import load_policy\nmodel, tokenizer = load_policy("{final}")  # an adapter loads '
             'merged onto its base')
    write_model_card(folder, kind="policy", method=method, base_model=config.model, adapter=config.lora,
                     metrics={f"train/{k}": v for k, v in metrics.items()}, usage=usage)


def plot_curves(history: list[dict[str, Any]], keys: Sequence[str], path: Path, title: str) -> Path | None:
    """One panel per logged key that has values (loss, reward, KL, ...) against the optimiser step."""
    series = {key: [(e["step"], e[key]) for e in history if key in e and "step" in e] for key in keys}
    series = {key: points for key, points in series.items() if points}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(series))
    rows = -(-len(series) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (key, points) in zip(axes.flat, series.items()):
        ax.plot(*zip(*points), marker="o" if len(points) < 30 else None)  # one point of a short run shows
        ax.set(title=key, xlabel="step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series):]:
        ax.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path
