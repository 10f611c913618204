"""Experiment tracking: the `report_to` setting of every trainer, checked before any training starts.

The names are the ones `transformers` (`TrainingArguments.report_to`) and accelerate (`Accelerator(log_with=...)`)
use, so reward, SFT, DPO, GRPO/RLOO (TRL) and PPO (accelerate) report to the same places:

- `tensorboard`: event files under the run's `checkpoints/runs/` (`tensorboard --logdir OUTPUT_DIR`);
- `trackio`: Hugging Face's local-first tracker (`trackio show`);
- `wandb`: Weights & Biases, in offline mode unless `WANDB_MODE` says otherwise (`wandb sync` uploads later);
- `mlflow`: `./mlruns` unless `MLFLOW_TRACKING_URI` says otherwise;
- `none` (the default): nothing beyond rlhfkit's own `train_log.json` and `curves.png`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

from rlhfkit.core.errors import ConfigError, SetupError

TRACKERS = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb", "mlflow": "mlflow"}
"""Tracker name -> the package it needs."""


def no_trackers() -> list[str]:
    """The default of every config's `report_to`: no tracker."""
    return ["none"]


def trackers(report_to: Sequence[str] | str) -> list[str]:
    """The trackers `report_to` asks for, as transformers and accelerate name them ([] for none). Raises
    ConfigError for an unknown name and SetupError naming the package for a tracker that is not installed."""
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    names = [part.strip() for name in names for part in name.split(",") if part.strip()]
    if not names or names == ["none"]:
        return []
    unknown = [name for name in names if name not in TRACKERS]
    if unknown or "none" in names:
        raise ConfigError(f"report_to: unknown tracker(s) {', '.join(unknown or ['none with others'])}; use none or "
                          f"any of {', '.join(TRACKERS)}")
    for name in names:
        package = TRACKERS[name]
        if importlib.util.find_spec(package) is None:
            raise SetupError(f"report_to {name} needs the `{package}` package, which is not installed: "
                             f"pip install {package}")
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")  # no network by default; `wandb sync` uploads a run later
    return list(dict.fromkeys(names))
