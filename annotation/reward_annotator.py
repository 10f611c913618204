"""Reward-model annotator: a trained reward model (or ensemble) judges pairs like any other annotator.

The label follows the calibrated preference P(a > b) = sigmoid((r_a - r_b) / T): within `tie_band` of 0.5 it is a
tie, otherwise the side it favours, with strength from how sure it is. Records keep the probability and the raw
rewards in metadata, so active selection and audits can use them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from preference.pairs import Pair
from preference.schema import Label, PreferenceRecord, Strength
from reward.model import load_reward_model
from reward.pairs import score_pairs
from rlhfkit.core.errors import InputError


def strength_of(probability: float) -> Strength:
    """How sure the model is that the preferred side wins (probability of the winning side, 0.5..1)."""
    sure = max(probability, 1 - probability)
    return Strength.STRONG if sure >= 0.9 else Strength.CLEAR if sure >= 0.7 else Strength.SLIGHT


class RewardAnnotator:
    """Annotator over `reward.model.load_reward_model(path)` (a model or an ensemble folder)."""

    def __init__(self, model: str | Path | Any, *, name: str | None = None, tie_band: float = 0.05):
        if not 0.0 <= tie_band < 0.5:
            raise InputError("tie_band is a distance from 0.5 in [0, 0.5)")
        self.model = load_reward_model(model) if isinstance(model, str | Path) else model
        self.name = name or f"reward:{Path(model).name if isinstance(model, str | Path) else 'model'}"
        self.tie_band = tie_band
        self.last_skipped: Counter[str] = Counter()

    def annotate(self, pairs: Sequence[Pair], *, on_pair: Callable[[], None] | None = None
                 ) -> list[PreferenceRecord | None]:
        self.last_skipped = Counter()
        if not pairs:
            return []
        rewards_a, rewards_b, probabilities = score_pairs(
            self.model, [p.prompt for p in pairs], [p.response_a for p in pairs], [p.response_b for p in pairs])
        records = []
        for pair, r_a, r_b, p_a in zip(pairs, rewards_a, rewards_b, probabilities, strict=True):
            if abs(p_a - 0.5) <= self.tie_band:
                label, strength = Label.TIE, None
            else:
                label, strength = (Label.A if p_a > 0.5 else Label.B), strength_of(p_a)
            metadata = {**pair.metadata, "reward": {"r_a": r_a, "r_b": r_b, "p_a": p_a}}
            records.append(PreferenceRecord(prompt=pair.prompt, response_a=pair.response_a,
                                            response_b=pair.response_b, label=label, strength=strength,
                                            annotator=self.name, source=self.name, metadata=metadata))
            if on_pair:
                on_pair()
        return records
