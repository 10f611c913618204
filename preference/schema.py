"""The preference record: one human or machine judgment of one pair of responses to one prompt.

Several judgments of the same pair (several annotators, or the same annotator twice in different sources) are all
kept; `preference.aggregate` turns them into one consensus label per pair.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# A chat prompt is a list of {"role": ..., "content": ...} messages, as in TRL's conversational format.
Message = dict[str, str]
Prompt = str | list[Message]

CHAT_ROLES = ("system", "user", "assistant", "tool")


class Label(StrEnum):
    """Which response the judge preferred."""

    A = "a"  # response_a is better
    B = "b"  # response_b is better
    TIE = "tie"  # equally good
    BOTH_BAD = "both_bad"  # neither is acceptable

    def swapped(self) -> Label:
        """The same judgment with the two responses' positions exchanged."""
        return {Label.A: Label.B, Label.B: Label.A}.get(self, self)


class Strength(StrEnum):
    """How much better the preferred response is; becomes a reward margin (see `STRENGTH_MARGINS`)."""

    SLIGHT = "slight"
    CLEAR = "clear"
    STRONG = "strong"


# Default margins for TRL's reward loss  -log σ(r_chosen - r_rejected - margin). Ordered and on the logit scale:
# a "strong" preference asks the model for a gap of 2 nats, i.e. P(chosen > rejected) ≈ 0.88 before the sigmoid loss.
STRENGTH_MARGINS: dict[Strength, float] = {Strength.SLIGHT: 0.5, Strength.CLEAR: 1.0, Strength.STRONG: 2.0}

# Columns of the stored dataset, in order. `prompt` holds text prompts; `prompt_messages` holds chat prompts as a JSON
# string (Arrow cannot hold "string or list" in one column); exactly one of the two is set.
COLUMNS = (
    "judgment_id",
    "pair_id",
    "prompt",
    "prompt_messages",
    "response_a",
    "response_b",
    "label",
    "strength",
    "annotator",
    "source",
    "timestamp",
    "item",
    "metadata",
)


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces, UTF-8) used for hashing and for the metadata column."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        encoded = part.encode("utf-8")
        # Length-prefix each part so that ("ab", "c") and ("a", "bc") never collide.
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.hexdigest()[:24]


def prompt_key(prompt: Prompt) -> str:
    """A stable id of the prompt alone: splits group on it so that no prompt lands in two splits."""
    return _sha("prompt", canonical_json(prompt))


def pair_id(prompt: Prompt, response_a: str, response_b: str) -> str:
    """Stable, order-independent id of (prompt, {response_a, response_b}): swapping the responses keeps the id."""
    first, second = sorted((response_a, response_b))
    return _sha("pair", canonical_json(prompt), first, second)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class PreferenceRecord:
    """One judgment. Field checks live in `preference.validation`; this class assumes valid values."""

    prompt: Prompt  # text, or chat messages [{"role": "user", "content": ...}, ...]
    response_a: str  # the response shown first (left)
    response_b: str  # the response shown second (right)
    label: Label  # a, b, tie or both_bad
    annotator: str  # who judged: "alice", "verifier:ifeval", "pandalm:annotator2", ...
    source: str  # where the judgment came from: a file name, a Label Studio project, a generator run
    strength: Strength | None = None  # optional: slight / clear / strong
    timestamp: str = dataclasses.field(default_factory=now_iso)  # ISO 8601, when the judgment was made or imported
    # The source's own id of the judged item (file row, PandaLM idx, Label Studio task), when it has one. Two items
    # may show the same pair (PandaLM has 86 such groups); each annotator's judgment of each item is kept.
    item: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)  # free-form, JSON-serialisable

    @property
    def pair_id(self) -> str:
        return pair_id(self.prompt, self.response_a, self.response_b)

    @property
    def judgment_id(self) -> str:
        """One judgment per (pair, annotator, source, item): a later judgment with the same id supersedes the earlier
        one (an edited annotation); other annotators' judgments of the pair are kept beside it."""
        return _sha("judgment", self.pair_id, self.annotator, self.source, self.item or "")

    @property
    def unit_id(self) -> str:
        """What agreement statistics count as one rated unit: the item when the source has items, else the pair."""
        return self.pair_id if self.item is None else _sha("unit", self.pair_id, self.item)

    @property
    def is_chat(self) -> bool:
        return isinstance(self.prompt, list)

    def margin(self, margins: dict[Strength, float] = STRENGTH_MARGINS) -> float | None:
        return None if self.strength is None else margins[self.strength]

    def canonical(self) -> PreferenceRecord:
        """The record with responses in a fixed order (sorted), label swapped to match.

        Judgments of one pair shown in different positions (Label Studio randomises A/B) become comparable.
        """
        if self.response_a <= self.response_b:
            return self
        return dataclasses.replace(
            self, response_a=self.response_b, response_b=self.response_a, label=self.label.swapped()
        )

    def to_row(self) -> dict[str, Any]:
        """The stored (Arrow/Parquet) row."""
        return {
            "judgment_id": self.judgment_id,
            "pair_id": self.pair_id,
            "prompt": None if self.is_chat else self.prompt,
            "prompt_messages": canonical_json(self.prompt) if self.is_chat else None,
            "response_a": self.response_a,
            "response_b": self.response_b,
            "label": self.label.value,
            "strength": None if self.strength is None else self.strength.value,
            "annotator": self.annotator,
            "source": self.source,
            "timestamp": self.timestamp,
            "item": self.item,
            "metadata": canonical_json(self.metadata),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PreferenceRecord:
        """Inverse of `to_row` (for rows read back from a store, which were validated when written)."""
        messages = row.get("prompt_messages")
        return cls(
            prompt=json.loads(messages) if messages else row["prompt"],
            response_a=row["response_a"],
            response_b=row["response_b"],
            label=Label(row["label"]),
            strength=Strength(row["strength"]) if row.get("strength") else None,
            annotator=row["annotator"],
            source=row["source"],
            timestamp=row["timestamp"],
            item=row.get("item"),
            metadata=json.loads(row["metadata"]) if row.get("metadata") else {},
        )
