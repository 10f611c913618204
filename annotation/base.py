"""The one interface every annotator implements: people (Label Studio), verifiers, reward models and LLM judges
all turn `Pair`s into `PreferenceRecord`s with their own annotator id, so every later stage reads one format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from preference.pairs import Pair
from preference.schema import PreferenceRecord


@runtime_checkable
class Annotator(Protocol):
    """Judges pairs. `name` becomes the records' annotator id (e.g. "verifier:ifeval", "reward:minilm-rm")."""

    name: str

    def annotate(self, pairs: Sequence[Pair]) -> list[PreferenceRecord | None]:
        """One result per pair, in order; None where this annotator cannot judge the pair (it says why in logs)."""
        ...
