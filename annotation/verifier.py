"""A programmatic annotator: IFEval's verifiable instructions decide which response follows the prompt better.

A pair whose `metadata` carries IFEval's `instruction_id_list` and `kwargs` is checked with `reward.ifeval`; each
response scores the share of instructions it follows, and the higher score wins:

    score_a > score_b            -> "a" (and the mirror case "b"); strength from the gap: >= 2/3 strong, >= 1/3 clear,
                                    else slight
    equal, both follow all       -> "tie"
    equal, both follow none      -> "both_bad"
    equal otherwise              -> "tie"
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from preference.pairs import Pair
from preference.schema import Label, PreferenceRecord, Strength
from reward.ifeval import (
    MODES,
    InstructionCheck,
    Mode,
    VerificationError,
    VerifierSetupError,
    ensure_punkt,
    feedback,
    verify_response,
)
from rlhfkit.core.errors import InputError

log = logging.getLogger(__name__)

VERIFIER_NAME = "verifier:ifeval"
STRONG_GAP = 2 / 3
CLEAR_GAP = 1 / 3
_EPS = 1e-9
__all__ = ["VERIFIER_NAME", "MODES", "VerifierAnnotator", "VerifierSetupError", "decide"]


def decide(score_a: float, score_b: float) -> tuple[Label, Strength | None]:
    """The label and strength for two instruction-following scores in [0, 1] (see the module docstring)."""
    gap = score_a - score_b
    if abs(gap) <= _EPS:
        if score_a >= 1 - _EPS:
            return Label.TIE, None
        if score_a <= _EPS:
            return Label.BOTH_BAD, None
        return Label.TIE, None
    size = abs(gap)
    strength = (Strength.STRONG if size >= STRONG_GAP - _EPS else
                Strength.CLEAR if size >= CLEAR_GAP - _EPS else Strength.SLIGHT)
    return (Label.A if gap > 0 else Label.B), strength


# -- the annotator --------------------------------------------------------------------------------------------------
NO_INSTRUCTIONS = "no verifiable instructions"


class VerifierAnnotator:
    """Judges pairs whose metadata has IFEval `instruction_id_list` + `kwargs` (implements `Annotator`).

    After each `annotate` call, `last_skipped` counts why pairs got None (e.g. {"no verifiable instructions": 3}).
    """

    def __init__(self, mode: Mode = "strict", name: str = VERIFIER_NAME, source: str = VERIFIER_NAME):
        if mode not in MODES:
            raise InputError(f"mode must be 'strict' or 'loose', not {mode!r}")
        ensure_punkt()  # fail now, with the install command, rather than at the first sentence count
        self.mode: Mode = mode
        self.name = name
        self.source = source
        self.last_skipped: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"VerifierAnnotator(mode={self.mode!r}, name={self.name!r})"

    def judge(self, pair: Pair) -> PreferenceRecord:
        """Judge one pair; raises `VerificationError` (with a countable `.reason`) when it cannot."""
        metadata = pair.metadata or {}
        ids = metadata.get("instruction_id_list")
        if not ids:
            raise VerificationError("the pair's metadata has no instruction_id_list", reason=NO_INSTRUCTIONS)
        if "kwargs" not in metadata:
            raise VerificationError("the pair's metadata has instruction_id_list but no kwargs",
                                    reason="kwargs missing")
        kwargs = metadata["kwargs"]
        score_a, results_a = verify_response(pair.response_a, ids, kwargs, pair.prompt, self.mode)
        score_b, results_b = verify_response(pair.response_b, ids, kwargs, pair.prompt, self.mode)
        label, strength = decide(score_a, score_b)
        verdict = {
            "name": "ifeval",
            "mode": self.mode,
            "score_a": score_a,
            "score_b": score_b,
            "a": self._side(score_a, results_a),
            "b": self._side(score_b, results_b),
        }
        return PreferenceRecord(prompt=pair.prompt, response_a=pair.response_a, response_b=pair.response_b,
                                label=label, strength=strength, annotator=self.name, source=self.source,
                                metadata={**metadata, "verifier": verdict})

    def _side(self, score: float, results: list[InstructionCheck]) -> dict[str, Any]:
        return {
            "score": score,
            "passed": [c.instruction_id for c in results if c.passed(self.mode)],
            "failed": [c.instruction_id for c in results if not c.passed(self.mode)],
            "results": [c.to_dict() for c in results],
            "feedback": feedback(results, self.mode),
        }

    def annotate(self, pairs: Sequence[Pair], *, on_pair: Callable[[], None] | None = None
                 ) -> list[PreferenceRecord | None]:
        """One record per pair, None where the pair cannot be verified; skips are logged once per reason."""
        out: list[PreferenceRecord | None] = []
        skipped: Counter[str] = Counter()
        for pair in pairs:
            try:
                out.append(self.judge(pair))
            except VerificationError as exc:
                out.append(None)
                skipped[exc.reason] += 1
            if on_pair is not None:
                on_pair()
        self.last_skipped = skipped
        for reason, count in sorted(skipped.items()):
            if reason == NO_INSTRUCTIONS:
                log.info("%s: %d of %d pair(s) have no verifiable instructions (metadata without "
                         "instruction_id_list); not judged", self.name, count, len(pairs))
            else:
                log.warning("%s: %d pair(s) not judged: %s", self.name, count, reason)
        return out
