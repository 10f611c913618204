"""Score both sides of pairs in one pass: rewards r_a, r_b and the calibrated P(a > b)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from preference.schema import Prompt
from rlhfkit.core.stats import sigmoid


def score_pairs(scorer: Any, prompts: Sequence[Prompt], responses_a: Sequence[str], responses_b: Sequence[str]
                ) -> tuple[list[float], list[float], list[float]]:
    """(r_a, r_b, p_a) from one pass over both sides (length-sorted batches span all of them). rlhfkit's reward
    models and ensembles calibrate p_a themselves; any other object with `score(prompts, responses)` gets
    p_a = sigmoid(r_a - r_b)."""
    if hasattr(scorer, "score_pairs"):
        return scorer.score_pairs(prompts, responses_a, responses_b)
    prompts = list(prompts)
    rewards = scorer.score(prompts + prompts, list(responses_a) + list(responses_b))
    r_a, r_b = rewards[: len(prompts)], rewards[len(prompts):]
    return r_a, r_b, [sigmoid(a - b) for a, b in zip(r_a, r_b)]
