"""Candidates -> preference pairs for annotation: all pairs, one random pair, or best vs worst by reward.

Identical candidates never make a pair (nothing to judge); every prompt's metadata (IFEval instructions, key) travels
into the pair, so the verifier annotator can judge it. Positions are shuffled with the seed: the first candidate is
not always response_a.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from preference.pairs import Pair
from reward.protocols import RewardScorer
from rlhfkit.core.errors import InputError

Strategy = Literal["all", "random", "best_worst"]
STRATEGIES: tuple[str, ...] = ("all", "random", "best_worst")


def candidate_pairs(rows: Sequence[dict[str, Any]], strategy: Strategy = "random", *,
                    scorer: RewardScorer | None = None, seed: int = 0) -> tuple[list[Pair], Counter[str]]:
    """(pairs, counts of prompts that gave none, by reason) from `generate_candidates` rows."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if strategy == "best_worst" and scorer is None:
        raise InputError("strategy 'best_worst' ranks candidates with a reward model: give a scorer (--reward-model)")
    rng = random.Random(seed)
    skipped: Counter[str] = Counter()
    distinct_rows = []
    for row in rows:
        distinct = list(dict.fromkeys(text for text in row["candidates"] if text.strip()))
        if len(distinct) < 2:
            skipped["fewer than two distinct non-empty candidates"] += 1
        else:
            distinct_rows.append((row, distinct))
    rewards: list[list[float]] = []
    if strategy == "best_worst" and distinct_rows:
        flat_prompts = [row["prompt"] for row, texts in distinct_rows for _ in texts]
        flat = scorer.score(flat_prompts, [text for _, texts in distinct_rows for text in texts])
        offsets = list(itertools.accumulate(len(texts) for _, texts in distinct_rows))
        rewards = [flat[end - len(texts):end] for (_, texts), end in zip(distinct_rows, offsets)]
    pairs = []
    for index, (row, texts) in enumerate(distinct_rows):
        metadata = {**(row.get("metadata") or {}), "key": row.get("key"), "generator": row.get("model")}
        if strategy == "all":
            chosen = list(itertools.combinations(texts, 2))
        elif strategy == "random":
            chosen = [tuple(rng.sample(texts, 2))]
        else:
            order = sorted(range(len(texts)), key=lambda i: rewards[index][i])
            chosen = [(texts[order[-1]], texts[order[0]])]
        for first, second in chosen:
            a, b = (first, second) if rng.random() < 0.5 else (second, first)
            pairs.append(Pair(row["prompt"], a, b, metadata))
    return pairs, skipped
