"""`RewardTrainingConfig`: every knob of `rlhfkit reward train`, documented where it is defined (as TRL does)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from rlhfkit.core.checks import require
from rlhfkit.core.tracking import no_trackers, trackers


@dataclasses.dataclass
class RewardTrainingConfig:
    # -- model ---------------------------------------------------------------------------------------------------
    model: str = "minilm-l6"
    """Backbone: a bundled short name (`minilm-l6`, `smollm2-135m-instruct`), a local folder, or a Hugging Face id
    in the local cache. A fresh scalar head (num_labels=1) is put on top."""
    pooling: Literal["auto", "model", "mean"] = "auto"
    """What the scalar head reads. `mean`: the average of the last hidden states (encoders with a pooler: BERT,
    MiniLM); `model`: the architecture's own head ([CLS] through BERT's pooler, a decoder's last token); `auto`:
    mean when the backbone is a sentence-transformers model trained with mean pooling (the bundled MiniLM), else
    model. See `reward.pooling`."""
    head_init: Literal["random", "linear_probe"] = "random"
    """The scalar head's starting weights: `random` starts from transformers' random initialisation, as plain TRL
    does; `linear_probe` fits it first on frozen features by the pairwise loss, then fine-tunes it with the rest
    (LP-FT; see `reward.linear_probe`). Measured in benchmarks/reward_quality.py: on PandaLM the probe start lost
    0.10 held-out accuracy (paired 95% CI 0.03 to 0.18; frozen MiniLM features carry little of PandaLM's signal),
    on HH-RLHF it was 0.01 ahead (within noise), so the default is random."""
    output_dir: str = "runs/reward"
    """Where the final model (`model/`, or `model/member-N/` for an ensemble), `checkpoints/`, `curves*.png`,
    `train_log*.json`, `config.json` and `summary.json` go."""
    max_length: int = 256
    """Token limit per (prompt, response). Longer pairs are truncated — the prompt loses its start first, then the
    response its end — instead of being dropped as TRL does; the counts are reported."""

    # -- data ----------------------------------------------------------------------------------------------------
    aggregate: Literal["majority", "unanimous", "weighted", "none"] = "majority"
    """How several judgments of a pair become one training pair (`none`: every judgment is a pair)."""
    ties: Literal["drop", "margin0"] = "drop"
    """Ties: dropped, or trained in both orders with margin 0 (pulls the two rewards together)."""
    both_bad: Literal["drop", "tie"] = "drop"
    """Pairs judged both bad: dropped, or handled as ties."""
    use_margin: bool = True
    """Turn judgment strength (slight / clear / strong) into TRL's margin (0.5 / 1.0 / 2.0)."""
    min_agreement: float = 0.0
    """Drop pairs whose consensus agreement is below this share."""

    # -- optimisation (passed to TRL's RewardConfig) ---------------------------------------------------------------
    learning_rate: float = 3e-5
    """Peak learning rate (linear decay after warm-up). Lower than TRL's 1e-4 default: small encoders over-fit fast
    on a few thousand pairs."""
    num_train_epochs: float = 2.0
    """Passes over the training pairs."""
    per_device_train_batch_size: int = 16
    """Pairs per optimiser step, per device (times gradient_accumulation_steps)."""
    gradient_accumulation_steps: int = 1
    """Batches whose gradients are summed before each optimiser step."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Share of the steps over which the learning rate rises linearly from 0."""
    center_rewards_coefficient: float | None = 0.01
    """TRL's auxiliary loss pulling mean reward to 0 (keeps scores comparable across runs); None to switch off."""
    seed: int = 0
    """Seed of data order, initialisation and sampling."""
    bf16: bool = False
    """bfloat16 mixed precision (GPUs that support it). Off on CPU."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (TRL turns it on by default). Off: small encoders
    fit easily, and recomputing costs about a third more time."""

    # -- LoRA ----------------------------------------------------------------------------------------------------
    lora: bool = False
    """Train LoRA adapters instead of all weights; the score head is trained in full and saved with them."""
    lora_r: int = 16
    """LoRA rank: the adapters' inner dimension."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA adapters' input."""
    lora_target_modules: list[str] | None = None
    """Modules to adapt; None lets PEFT pick the usual ones for the architecture."""

    # -- ensembles, checkpoints, logging -------------------------------------------------------------------------------
    ensemble: int = 1
    """Members trained with seeds seed, seed+1, ...; their spread measures uncertainty (active selection, RL)."""
    save_steps: int = 200
    """Checkpoint every this many optimiser steps (and keep the last two)."""
    logging_steps: int = 10
    """Log (and plot) the losses every this many optimiser steps."""
    resume: bool = False
    """Continue an interrupted run from the last checkpoint in output_dir."""
    eval_fraction: float = 0.0
    """Share of prompts held out (grouped by prompt) to report eval loss/accuracy during training; 0 = none."""
    report_to: list[str] = dataclasses.field(default_factory=no_trackers)
    """Experiment trackers besides train_log.json and curves.png: none, or any of tensorboard, trackio, wandb
    (offline unless WANDB_MODE says otherwise), mlflow (see `rlhfkit.core.tracking`). The package must be
    installed."""

    def validate(self) -> None:
        """Raise ValueError naming the bad field (before any work starts)."""
        checks = [
            (self.max_length >= 64, "max_length must be at least 64"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.num_train_epochs > 0, "num_train_epochs must be positive"),
            (self.per_device_train_batch_size >= 1, "per_device_train_batch_size must be at least 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be at least 1"),
            (self.ensemble >= 1, "ensemble must be at least 1"),
            (0.0 <= self.min_agreement <= 1.0, "min_agreement is a share between 0 and 1"),
            (0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)"),
            (self.pooling in ("auto", "model", "mean"), "pooling must be 'auto', 'model' or 'mean'"),
            (self.head_init in ("random", "linear_probe"), "head_init must be 'random' or 'linear_probe'"),
            (self.ties in ("drop", "margin0"), "ties must be 'drop' or 'margin0'"),
            (self.both_bad in ("drop", "tie"), "both_bad must be 'drop' or 'tie' (KTO negatives do not apply)"),
            (self.aggregate in ("majority", "unanimous", "weighted", "none"), "aggregate must be majority, "
             "unanimous, weighted or none"),
            (self.save_steps >= 1 and self.logging_steps >= 1, "save_steps and logging_steps must be at least 1"),
        ]
        trackers(self.report_to)  # an unknown or uninstalled tracker fails here, before any work
        require(checks, "RewardTrainingConfig")
