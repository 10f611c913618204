"""Consensus labels: several judgments of one pair (or one rated unit) become one label.

Judgments of one group may show the two responses in different positions (Label Studio randomises A/B), so every
judgment is first put into the orientation of the group's first record; the consensus then keeps that record's a/b
meaning, which is what a reader of the stored data expects (PandaLM's majorities read 422 a / 472 b / 105 tie).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable

from preference.schema import Label, PreferenceRecord
from rlhfkit.core.errors import InputError

METHODS = ("majority", "unanimous", "weighted")
GROUPINGS = ("pair", "unit")

# One group: its records in first-seen order, each with its label in the orientation of the group's first record.
Group = list[tuple[PreferenceRecord, Label]]


@dataclasses.dataclass
class Consensus:
    """The consensus of one group of judgments."""

    key: str  # pair_id or unit_id
    record: PreferenceRecord  # the group's first record; `label` and `votes` are in its orientation
    label: Label | None  # None when the judgments do not resolve (plurality tie, not unanimous, ...)
    votes: dict[Label, int]
    n_judgments: int
    agreement: float  # share of judgments equal to `label`; 0 when unresolved
    margin: float | None  # mean margin of the agreeing judgments that carry a strength
    annotators: list[str]


def _check_by(by: str) -> None:
    if by not in GROUPINGS:
        raise InputError(f"unknown grouping by={by!r}; expected one of {', '.join(GROUPINGS)}")


def oriented_groups(records: Iterable[PreferenceRecord], by: str = "unit") -> dict[str, Group]:
    """Group records by `pair_id` or `unit_id` (first-seen order) with labels in each group's first orientation."""
    _check_by(by)
    groups: dict[str, Group] = {}
    for record in records:
        group = groups.setdefault(record.pair_id if by == "pair" else record.unit_id, [])
        # Same pair id but response_a differs: the responses were shown the other way round.
        swapped = bool(group) and record.response_a != group[0][0].response_a
        group.append((record, record.label.swapped() if swapped else record.label))
    return groups


def strict_max(scores: dict[Label, float]) -> Label | None:
    """The label with the strictly highest score; None on a tie at the top (no silent tie-breaking by order)."""
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def annotator_reliability(records: Iterable[PreferenceRecord], by: str = "unit") -> dict[str, float]:
    """Each annotator's Laplace-smoothed rate (agree+1)/(n+2) of agreeing with the OTHER annotators' majority.

    Leaving the annotator out keeps their own vote from inflating their score; smoothing keeps an annotator with
    few comparable units near 0.5 instead of 0 or 1. Units where the others have no strict majority don't count.
    """
    agree: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    annotators: dict[str, None] = {}
    for group in oriented_groups(records, by).values():
        for record, label in group:
            annotators.setdefault(record.annotator)
            others = strict_max(Counter(lab for rec, lab in group if rec.annotator != record.annotator))
            if others is not None:
                seen[record.annotator] += 1
                agree[record.annotator] += label == others
    return {name: (agree[name] + 1) / (seen[name] + 2) for name in annotators}


def _consensus(key: str, group: Group, method: str, weights: dict[str, float]) -> Consensus:
    votes = Counter(label for _, label in group)
    if method == "majority":
        label = strict_max(dict(votes))
    elif method == "unanimous":
        label = group[0][1] if len(votes) == 1 else None
    else:
        scores: defaultdict[Label, float] = defaultdict(float)
        for record, lab in group:
            scores[lab] += weights[record.annotator]
        label = strict_max(dict(scores))
    margins = [m for rec, lab in group if lab == label and (m := rec.margin()) is not None]
    return Consensus(
        key=key,
        record=group[0][0],
        label=label,
        votes=dict(votes),
        n_judgments=len(group),
        agreement=votes[label] / len(group) if label is not None else 0.0,
        margin=sum(margins) / len(margins) if margins else None,
        annotators=list(dict.fromkeys(rec.annotator for rec, _ in group)),
    )


def aggregate(records: Iterable[PreferenceRecord], method: str = "majority", by: str = "pair",
              weights: dict[str, float] | None = None) -> list[Consensus]:
    """One `Consensus` per pair (`by="pair"`) or rated unit (`by="unit"`), in first-seen order.

    - "majority": strict plurality; a tie between the top labels is unresolved.
    - "unanimous": every judgment agrees, else unresolved.
    - "weighted": sum of annotator weights per label, strict maximum; without `weights` each annotator's weight is
      `annotator_reliability(records)`, so a consistent annotator can outvote several erratic ones.
    """
    if method not in METHODS:
        raise InputError(f"unknown aggregation method {method!r}; expected one of {', '.join(METHODS)}")
    _check_by(by)
    if weights is not None and method != "weighted":
        raise ValueError(f"weights are only used by method='weighted', not {method!r}")
    records = list(records)
    if method == "weighted":
        if weights is None:
            weights = annotator_reliability(records, by)
        missing = sorted({r.annotator for r in records} - set(weights))
        if missing:
            raise InputError(f"no weight for annotator(s) {', '.join(missing)}; give every annotator a weight")
        negative = sorted(name for name, w in weights.items() if w < 0)
        if negative:
            raise InputError(f"weights must be >= 0; negative for {', '.join(negative)}")
    return [_consensus(key, group, method, weights or {}) for key, group in oriented_groups(records, by).items()]
