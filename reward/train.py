"""Train reward models with TRL's RewardTrainer on preference judgments: `train_reward_model(records, config)`.

What rlhfkit adds around TRL: its own encoding (truncation instead of silent drops, no EOS requirement), strength as
margin and ties by the data layer's policy, a pad token for tokenizers without one, LoRA with the score head saved,
ensembles, resumable checkpoints, a NaN-loss stop, and curves saved as JSON and PNG.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

from preference.schema import PreferenceRecord, prompt_key
from reward.config import RewardTrainingConfig
from reward.data import PreparedData, prepare
from reward.linear_probe import ProbeFit, fit_head_probe, set_head
from reward.meta import RewardMeta
from reward.pooling import apply_pooling, resolve_pooling, saved_pooling
from rlhfkit.core.atomic import atomic_dir, atomic_write_text
from rlhfkit.core.callbacks import StopOnNonFiniteLoss, show_metrics_on_the_bar
from rlhfkit.core.errors import InputError
from rlhfkit.core.run_dir import is_main_process, last_complete_checkpoint, prepare_run_dir
from rlhfkit.core.tracking import trackers
from rlhfkit.models.registry import resolve_model

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    model_dir: Path  # load with reward.model.load_reward_model (a model, or an ensemble's member-N folders)
    members: list[Path]
    data: dict[str, Any]  # PreparedData.summary()
    metrics: list[dict[str, Any]]  # final train metrics per member


def load_tokenizer_with_pad(path: str) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        # Decoders often ship without a pad token; any existing special token works because padded positions are
        # masked. MiniLM has pad but no EOS, which rlhfkit never needs (it tokenizes itself).
        fallback = tokenizer.eos_token or tokenizer.sep_token or tokenizer.unk_token
        if fallback is None:
            raise InputError(f"{path}: the tokenizer has no pad, eos, sep or unk token to pad batches with")
        tokenizer.pad_token = fallback
    return tokenizer


def load_backbone(path: str, tokenizer: Any, pooling: str = "model") -> torch.nn.Module:
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    except ValueError as exc:  # "Unrecognized configuration class ... for AutoModelForSequenceClassification"
        raise InputError(f"{path}: this architecture cannot take a sequence-classification (reward) head: {exc}") \
            from exc
    model.config.pad_token_id = tokenizer.pad_token_id
    return apply_pooling(model, resolve_pooling(pooling, path, model))


def _split_eval(data: PreparedData, fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    if fraction <= 0:
        return data.rows, []
    keys = sorted({prompt_key(prompt) for prompt in data.prompts})
    random.Random(seed).shuffle(keys)
    held = set(keys[: max(1, int(len(keys) * fraction))])
    train = [row for row, prompt in zip(data.rows, data.prompts) if prompt_key(prompt) not in held]
    evaluation = [row for row, prompt in zip(data.rows, data.prompts) if prompt_key(prompt) in held]
    return train, evaluation


def _trl_config(config: RewardTrainingConfig, checkpoints: Path, seed: int, has_eval: bool) -> RewardConfig:
    return RewardConfig(
        output_dir=str(checkpoints),
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size * 2,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        center_rewards_coefficient=config.center_rewards_coefficient,
        seed=seed,
        data_seed=seed,
        bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        max_length=None,  # rlhfkit truncated already; TRL's filter would only drop pairs
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        eval_strategy="epoch" if has_eval else "no",
        report_to=trackers(config.report_to),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=False,  # the bar stays when transformers' logs are quiet (its default hides it then)
    )


def _peft_config(config: RewardTrainingConfig) -> Any:
    if not config.lora:
        return None
    from peft import LoraConfig, TaskType

    # TaskType.SEQ_CLS makes PEFT train and save the new score head ("classifier" / "score") in full.
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=config.lora_target_modules)


def _save_curves(history: list[dict[str, Any]], folder: Path, suffix: str) -> None:
    atomic_write_text(folder / f"train_log{suffix}.json", json.dumps(history, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [(e["step"], e) for e in history if "loss" in e]
    evals = [(e["step"], e) for e in history if "eval_loss" in e]
    if not steps:
        return
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    marker = "o" if len(steps) < 30 else None  # a short run's few points (or one) stay visible
    loss_ax.plot([s for s, _ in steps], [e["loss"] for _, e in steps], marker=marker, label="train")
    if evals:
        loss_ax.plot([s for s, _ in evals], [e["eval_loss"] for _, e in evals], "o-", label="eval")
    loss_ax.set(title="pairwise loss", xlabel="step", ylabel="-log sigmoid(r_chosen - r_rejected - margin)")
    loss_ax.legend()
    train_acc = [(s, e["accuracy"]) for s, e in steps if "accuracy" in e]
    if train_acc:
        acc_ax.plot(*zip(*train_acc), marker=marker, label="train (batch)")
    if evals and "eval_accuracy" in evals[0][1]:
        acc_ax.plot([s for s, _ in evals], [e["eval_accuracy"] for _, e in evals], "o-", label="eval")
    acc_ax.set(title="pairwise accuracy", xlabel="step", ylabel="share with r_chosen > r_rejected", ylim=(0, 1))
    acc_ax.legend()
    figure.tight_layout()
    tmp = folder / f".curves{suffix}.tmp.png"
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(folder / f"curves{suffix}.png")


def _write_cards(config: RewardTrainingConfig, model_dir: Path, members: list[Path], records: list[PreferenceRecord],
                 data_summary: dict[str, Any], metrics: list[dict[str, Any]]) -> None:
    """A model card in the model folder (and in each member's, for an ensemble)."""
    from rlhfkit.models.card import write_model_card

    sources = sorted({record.source for record in records})
    shown = {"pairs": data_summary["pairs"], "ensemble members": len(members),
             **{f"train/{k}": v for k, v in (metrics[-1] if metrics else {}).items()}}
    usage = (f'from reward.model import load_reward_model\nmodel = load_reward_model("{model_dir}")\n'
             'model.score(["Say hi"], ["Hi!"])  # one reward per (prompt, response)')
    for folder in {model_dir, *members}:
        write_model_card(folder, kind="reward model", method="reward", base_model=config.model, adapter=config.lora,
                         sources=sources, metrics=shown, usage=usage)


def _train_member(config: RewardTrainingConfig, path: str, tokenizer: Any, train_rows: list[dict],
                  eval_rows: list[dict], name: str, final: Path, seed: int, data_summary: dict[str, Any],
                  probe: list[ProbeFit]) -> dict[str, Any]:
    out = Path(config.output_dir)
    checkpoints = out / "checkpoints" / name
    torch.manual_seed(seed)
    model = load_backbone(path, tokenizer, config.pooling)
    last = last_complete_checkpoint(checkpoints) if config.resume else None
    stats: dict[str, float] = {}
    if config.head_init == "linear_probe" and not last:  # resuming loads the checkpoint's head: nothing to fit
        if not probe:  # members share one backbone, hence one probe: fit it for the first member only
            probe.append(fit_head_probe(model, tokenizer, train_rows))
        set_head(model, probe[0].weights)
        stats = probe[0].stats
    trainer = RewardTrainer(
        model=model,
        args=_trl_config(config, checkpoints, seed, bool(eval_rows)),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=_peft_config(config),
        callbacks=[StopOnNonFiniteLoss()],
    )
    show_metrics_on_the_bar(trainer)
    if last:
        log.info("resuming %s from %s", name, last)
    output = trainer.train(resume_from_checkpoint=last)
    if trainer.accelerator.is_main_process:  # several processes (accelerate launch): one writes
        with atomic_dir(final) as tmp:
            trainer.model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            RewardMeta(backbone=config.model, max_length=config.max_length, lora=config.lora,
                       pooling=saved_pooling(model.config, None),
                       extra={"seed": seed, "data": data_summary, "train_metrics": output.metrics, **stats}).save(tmp)
        _save_curves(trainer.state.log_history, out, "" if name == "single" else f"-{name}")
    trainer.accelerator.wait_for_everyone()
    return output.metrics


def train_reward_model(records: list[PreferenceRecord], config: RewardTrainingConfig | None = None) -> TrainResult:
    """Train one reward model (or an ensemble) on `records`; see `RewardTrainingConfig`."""
    config = config or RewardTrainingConfig()
    config.validate()
    out = Path(config.output_dir)
    path = resolve_model(config.model)
    tokenizer = load_tokenizer_with_pad(path)
    data = prepare(records, tokenizer, config)
    train_rows, eval_rows = _split_eval(data, config.eval_fraction, config.seed)
    log.info("training on %d pairs (%d held out); truncated sides: %s", len(train_rows), len(eval_rows),
             dict(data.truncated) or "none")
    # TRL's arguments set up the distributed state (accelerate launch / torchrun) that prepare_run_dir reads.
    _trl_config(config, out / "checkpoints", config.seed, False)
    prepare_run_dir(out, config.resume, dataclasses.asdict(config))
    members, metrics = [], []
    probe: list[ProbeFit] = []  # the head's linear probe, fitted by the first member that needs it
    for index in range(config.ensemble):
        name = f"member-{index}" if config.ensemble > 1 else "single"
        final = out / "model" / name if config.ensemble > 1 else out / "model"
        if config.resume and (final / "rlhfkit_reward.json").exists():
            log.info("%s already finished; skipping", name)
        else:
            metrics.append(_train_member(config, path, tokenizer, train_rows, eval_rows, name, final,
                                         config.seed + index, data.summary(), probe))
        members.append(final)
    summary = {"data": data.summary(), "members": [str(m) for m in members], "metrics": metrics}
    if is_main_process():
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
        _write_cards(config, out / "model", members, records, data.summary(), metrics)
    return TrainResult(out / "model", members, data.summary(), metrics)
