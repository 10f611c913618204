"""Reward models and IFEval verification inside DSPy: a scoring module and metrics for Evaluate and the optimizers.

- `RewardScore`: a DSPy module, `forward(prompt, response) -> dspy.Prediction(score=...)`, over any rlhfkit reward
  model or ensemble (anything with `score(prompts, responses)`).
- `InstructionFollowingMetric`: a metric that scores a program's answer to an example by
  `verifier_weight x (share of the example's IFEval instructions followed) + reward_weight x sigmoid(reward)`,
  normalised by the weights' sum so it stays in [0, 1]. It fits every DSPy consumer:
  - `dspy.Evaluate`, MIPROv2 and COPRO call `metric(example, pred, trace=None)` and get a float;
  - GEPA calls `metric(gold, pred, trace, pred_name, pred_trace)` and gets `dspy.Prediction(score=..., feedback=...)`
    whose feedback names the instructions the answer failed, which GEPA's reflection turns into better
    instructions.
  An answer that is missing or empty scores 0 ("no answer"), and a reward model that fails is reported in the
  feedback, never raised into the optimizer.
"""

from __future__ import annotations

import math
from typing import Any

import dspy

from reward.ifeval import Mode, VerificationError, feedback, verify_response
from reward.protocols import RewardScorer
from rlhfkit.core.errors import InputError


class RewardScore(dspy.Module):
    """Score one (prompt, response) with a reward model: `Prediction(score=float)` (higher is better)."""

    def __init__(self, scorer: RewardScorer):
        super().__init__()
        self.scorer = scorer

    def forward(self, prompt: Any, response: str) -> dspy.Prediction:
        return dspy.Prediction(score=float(self.scorer.score([prompt], [response])[0]))


class InstructionFollowingMetric:
    """See the module docstring. `response_field` names the prediction's answer field (default `response`); the
    example carries `prompt` and, for the verifier, `instruction_id_list` and `kwargs` (IFEval's format)."""

    def __init__(self, *, verifier: Mode | None = "loose", verifier_weight: float = 1.0,
                 reward_model: RewardScorer | None = None, reward_weight: float = 1.0,
                 response_field: str = "response", prompt_field: str = "prompt", feedback: bool = False):
        """`feedback=True` always returns `Prediction(score, feedback)` (GEPA at the program level); otherwise a
        float, unless the caller names a predictor (GEPA's per-predictor call)."""
        if verifier is None and reward_model is None:
            raise InputError("the metric needs the verifier, a reward model, or both")
        if verifier not in (None, "strict", "loose"):
            raise InputError(f"verifier must be 'strict', 'loose' or None, not {verifier!r}")
        if verifier_weight < 0 or reward_weight < 0:
            raise InputError("metric weights must be 0 or positive")
        self.verifier = verifier
        self.verifier_weight = verifier_weight if verifier else 0.0
        self.reward_model = reward_model
        self.reward_weight = reward_weight if reward_model is not None else 0.0
        if self.verifier_weight + self.reward_weight <= 0:
            raise InputError("at least one metric weight must be positive")
        self.response_field, self.prompt_field, self.feedback = response_field, prompt_field, feedback

    def score_with_feedback(self, example: Any, pred: Any) -> tuple[float, str]:
        answer = getattr(pred, self.response_field, None) if pred is not None else None
        if not isinstance(answer, str) or not answer.strip():
            return 0.0, "no answer: the program returned nothing usable"
        prompt = example.get(self.prompt_field, "") if hasattr(example, "get") else getattr(example,
                                                                                             self.prompt_field, "")
        total, notes = 0.0, []
        if self.verifier_weight:
            ids = example.get("instruction_id_list") if hasattr(example, "get") else None
            if not ids:
                notes.append("no verifiable instructions on this example (verifier part scored 0)")
            else:
                try:
                    share, checks = verify_response(answer, ids, example.get("kwargs") or [], prompt, self.verifier)
                except VerificationError as exc:
                    share, checks = 0.0, []
                    notes.append(f"the instructions could not be checked: {exc}")
                total += self.verifier_weight * share
                if checks:
                    notes.append(feedback(checks, self.verifier))
        if self.reward_weight:
            try:
                reward = float(self.reward_model.score([prompt], [answer])[0])
            except Exception as exc:  # a failing reward model costs this answer its reward, not the whole search
                notes.append(f"reward model failed ({type(exc).__name__}: {exc})")
            else:
                total += self.reward_weight * (1.0 / (1.0 + math.exp(-reward)))
                notes.append(f"reward {reward:+.3f}")
        return total / (self.verifier_weight + self.reward_weight), "; ".join(notes)

    def __call__(self, example: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
                 pred_trace: Any = None) -> float | dspy.Prediction:
        score, text = self.score_with_feedback(example, pred)
        if self.feedback or pred_name is not None or pred_trace is not None:  # GEPA asks for feedback
            return dspy.Prediction(score=score, feedback=text)
        return score
