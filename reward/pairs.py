"""Score both sides of pairs in one pass: rewards r_a, r_b and the calibrated P(a > b)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from preference.schema import Prompt


def score_pairs(scorer: Any, prompts: Sequence[Prompt], responses_a: Sequence[str], responses_b: Sequence[str]
                ) -> tuple[list[float], list[float], list[float]]:
    """(r_a, r_b, p_a). One `score` call over both sides, so length-sorted batching spans all of them."""
    prompts = list(prompts)
    rewards = scorer.score(prompts + prompts, list(responses_a) + list(responses_b))
    r_a, r_b = rewards[: len(prompts)], rewards[len(prompts):]
    if hasattr(scorer, "members"):  # an ensemble calibrates each member with its own temperature
        return r_a, r_b, scorer.compare(prompts, responses_a, responses_b)
    temperature = getattr(getattr(scorer, "meta", None), "temperature", 1.0)
    return r_a, r_b, [1.0 / (1.0 + math.exp(-(a - b) / temperature)) for a, b in zip(r_a, r_b)]
