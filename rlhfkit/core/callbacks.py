"""Trainer callbacks shared by the reward and policy trainers."""

from __future__ import annotations

import math

from transformers import TrainerCallback

from rlhfkit.core.errors import TrainingDiverged


class StopOnNonFiniteLoss(TrainerCallback):
    """Stops training with `TrainingDiverged` when a logged loss is NaN or infinite (reward and policy trainers)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss} at step {state.global_step}: lower "
                                   "--learning-rate, or check the data for empty responses")
