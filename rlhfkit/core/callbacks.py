"""Trainer callbacks shared by the reward and policy trainers."""

from __future__ import annotations

import math

from transformers import ProgressCallback, TrainerCallback

from rlhfkit.core.errors import TrainingDiverged


class StopOnNonFiniteLoss(TrainerCallback):
    """Stops training with `TrainingDiverged` when a logged loss is NaN or infinite (reward and policy trainers)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss} at step {state.global_step}: lower "
                                   "--learning-rate, or check the data for empty responses")


class ProgressWithMetrics(ProgressCallback):
    """TRL's progress bar, with the latest loss (and accuracy or margin) shown on the bar instead of a raw dict
    printed below it every `logging_steps`; the full logs still go to train_log.json."""

    SHOWN = ("loss", "accuracy", "rewards/margins", "reward", "eval_loss", "eval_accuracy")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {key.split("/")[-1]: f"{logs[key]:.4g}" for key in self.SHOWN
                     if isinstance(logs.get(key), int | float)}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)


def show_metrics_on_the_bar(trainer) -> None:
    """Swap the trainer's progress callback for `ProgressWithMetrics` (when it has a bar at all)."""
    if any(isinstance(callback, ProgressCallback) for callback in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(ProgressWithMetrics())
