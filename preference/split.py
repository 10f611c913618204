"""Group-aware splits (no prompt in two splits), de-duplication and filters over preference records.

Splitting by prompt matters: pairs that share a prompt leak the prompt's answer style across train and test, so
held-out accuracy would be inflated.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Literal

from preference.schema import Label, PreferenceRecord, prompt_key
from rlhfkit.core.errors import InputError


def parse_ratios(ratios: dict[str, float]) -> dict[str, float]:
    """Check split ratios: positive, at least one, normalised to sum to 1."""
    if not ratios:
        raise InputError("give at least one split, e.g. train=0.8 test=0.2")
    bad = {name: value for name, value in ratios.items() if not value > 0}
    if bad:
        raise InputError(f"split ratios must be positive: {bad}")
    total = sum(ratios.values())
    return {name: value / total for name, value in ratios.items()}


def split_by_prompt(records: Iterable[PreferenceRecord], ratios: dict[str, float], seed: int = 0
                    ) -> dict[str, list[PreferenceRecord]]:
    """Split so that every record of one prompt lands in one split, and split sizes follow `ratios` by record count.

    Deterministic for a given seed and set of prompts (independent of input order).
    """
    ratios = parse_ratios(ratios)
    groups: dict[str, list[PreferenceRecord]] = {}
    for record in records:
        groups.setdefault(prompt_key(record.prompt), []).append(record)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    total = sum(len(group) for group in groups.values())
    names = list(ratios)
    out: dict[str, list[PreferenceRecord]] = {name: [] for name in names}
    # Walk the shuffled prompts and fill each split up to its cumulative share of records.
    bounds, acc = [], 0.0
    for name in names:
        acc += ratios[name] * total
        bounds.append(acc)
    filled, index = 0, 0
    for key in keys:
        while index < len(names) - 1 and filled >= bounds[index]:
            index += 1
        out[names[index]].extend(groups[key])
        filled += len(groups[key])
    return out


def deduplicate(records: Iterable[PreferenceRecord], by: Literal["judgment", "pair"] = "judgment"
                ) -> list[PreferenceRecord]:
    """Drop repeated judgments (the latest of one judgment_id is kept), or keep one judgment per pair (the first)."""
    if by == "judgment":
        latest = {record.judgment_id: record for record in records}
        return list(latest.values())
    if by == "pair":
        first: dict[str, PreferenceRecord] = {}
        for record in records:
            first.setdefault(record.pair_id, record)
        return list(first.values())
    raise InputError(f"deduplicate by 'judgment' or 'pair', not {by!r}")


def filter_records(
    records: Iterable[PreferenceRecord],
    labels: Sequence[Label | str] | None = None,
    annotators: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    exclude_flags: Sequence[str] = (),
    max_chars: int | None = None,
) -> list[PreferenceRecord]:
    """Keep records matching every given condition. `max_chars` bounds each response's length."""
    wanted = {Label(label) for label in labels} if labels else None
    kept = []
    for record in records:
        if wanted is not None and record.label not in wanted:
            continue
        if annotators and record.annotator not in annotators:
            continue
        if sources and record.source not in sources:
            continue
        if exclude_flags and set(record.metadata.get("flags", [])) & set(exclude_flags):
            continue
        if max_chars is not None and max(len(record.response_a), len(record.response_b)) > max_chars:
            continue
        kept.append(record)
    return kept
