"""Active selection: which pairs are worth a person's time, under a labelling budget.

    random        a seeded uniform sample (the baseline every other strategy should beat)
    uncertainty   pairs the reward model(s) cannot separate: smallest |mean over scorers of r(a) - r(b)|
    disagreement  pairs the machine judges disagree on:
                    >= 2 scorers: reward margins of opposite signs first, then the largest spread (std) of margins
                    >= 2 annotators: the largest vote entropy over their labels (a / b / tie / both_bad)

With `diverse=True`, a batch holds no two pairs whose prompts are near-duplicates (the same prompt, or nearly the
same words), unless too few distinct prompts are left: near-duplicates then fill the rest, best-ranked first.

`select_pairs` returns the chosen pairs, most informative first, each with the number it was ranked by (`score`)
and a readable `reason`. Equal scores are ordered by a seeded shuffle, so a result depends only on its inputs and
the seed.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from annotation.base import Annotator
from preference.pairs import Pair
from reward.protocols import RewardScorer
from rlhfkit.core.errors import InputError

STRATEGIES: tuple[str, ...] = ("random", "uncertainty", "disagreement")
NEAR_DUPLICATE = 0.8
"""Word-set Jaccard similarity from which two prompts count as near-duplicates in a diverse batch."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """One chosen pair. `score` is what the strategy ranked by: a random draw in [0, 1) (random), |mean reward margin|
    (uncertainty, smallest first), std of the reward margins or vote entropy in bits (disagreement, largest first)."""

    pair: Pair
    score: float
    reason: str


def select_pairs(pairs: Sequence[Pair], strategy: str, budget: int, *, seed: int = 0,
                 scorers: Sequence[RewardScorer] | None = None,
                 annotators: Sequence[Annotator] | None = None, diverse: bool = False) -> list[Selection]:
    """Choose up to `budget` pairs with `strategy` (see the module docstring); all pairs when budget >= len(pairs).
    `diverse`: no two chosen pairs have near-duplicate prompts while the ranking has others to offer (see
    `diverse_batch`).

    Raises ValueError for an unknown strategy, a budget that is not a positive integer, or a strategy without what it
    needs (uncertainty: >= 1 scorer; disagreement: >= 2 scorers or >= 2 annotators, not both). `random` ignores
    scorers and annotators.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"unknown selection strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise InputError(f"budget must be a whole number of pairs, not {budget!r}")
    if budget <= 0:
        raise InputError(f"budget must be at least 1 pair, not {budget}")
    scorers = list(scorers or [])
    annotators = list(annotators or [])
    for scorer in scorers:
        if not callable(getattr(scorer, "score", None)):
            raise ValueError(f"{scorer!r} is not a reward scorer: it needs a score(prompts, responses) method")
    for annotator in annotators:
        if not callable(getattr(annotator, "annotate", None)):
            raise ValueError(f"{annotator!r} is not an annotator: it needs an annotate(pairs) method")
    pairs = list(pairs)
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in pairs]  # drawn first, so each strategy's ties are ordered by the seed alone

    if strategy == "random":
        ranked = [(tiebreak[i], i, f"random sample (seed {seed})") for i in range(len(pairs))]
        ranked.sort(key=lambda entry: entry[0])
    elif strategy == "uncertainty":
        if not scorers:
            raise InputError("strategy 'uncertainty' needs at least one reward scorer (an object with "
                             "score(prompts, responses) -> list[float])")
        if annotators:
            raise InputError("strategy 'uncertainty' ranks by reward margins; annotators give labels, not margins "
                             "(use strategy 'disagreement' with >= 2 annotators)")
        margins = _margins(pairs, scorers)
        ranked = []
        for i in range(len(pairs)):
            mean = sum(m[i] for m in margins) / len(margins)
            ranked.append((abs(mean), i, f"|mean reward margin| {abs(mean):.4g} over {len(margins)} scorer(s)"))
        ranked.sort(key=lambda entry: (entry[0], tiebreak[entry[1]]))
    else:
        if scorers and annotators:
            raise InputError("strategy 'disagreement' uses either reward scorers or annotators, not both")
        if len(scorers) >= 2:
            ranked = _scorer_disagreement(pairs, scorers, tiebreak)
        elif len(annotators) >= 2:
            ranked = _annotator_disagreement(pairs, annotators, tiebreak)
        else:
            have = f"{len(scorers)} scorer(s)" if scorers else f"{len(annotators)} annotator(s)"
            raise InputError(f"strategy 'disagreement' needs at least 2 reward scorers or at least 2 annotators to "
                             f"compare; got {have}")
    if diverse:
        ranked = diverse_batch(ranked, [pairs[i] for _, i, _ in ranked], budget)
    return [Selection(pairs[i], float(score), reason) for score, i, reason in ranked[:budget]]


def _prompt_words(prompt: Any) -> frozenset[str]:
    text = prompt if isinstance(prompt, str) else " ".join(m.get("content", "") for m in prompt)
    return frozenset(re.findall(r"[a-z0-9]+", text.lower()))


def diverse_batch(ranked: list[Any], ranked_pairs: list[Pair], budget: int) -> list[Any]:
    """The first `budget` entries of `ranked` (in its order) skipping any whose prompt is a near-duplicate of a
    prompt already taken: word-set Jaccard similarity >= NEAR_DUPLICATE (the same prompt, or nearly the same
    words). Skipped entries fill what is left when the distinct ones run out."""
    taken: list[frozenset[str]] = []
    kept, skipped = [], []
    for entry, pair in zip(ranked, ranked_pairs, strict=True):
        if len(kept) == budget:
            break
        words = _prompt_words(pair.prompt)
        if any(len(words & other) >= NEAR_DUPLICATE * len(words | other) for other in taken):
            skipped.append(entry)
            continue
        taken.append(words)
        kept.append(entry)
    return kept + skipped[: budget - len(kept)]


def _margins(pairs: list[Pair], scorers: list[RewardScorer]) -> list[list[float]]:
    """r(a) - r(b) per scorer per pair; one score() call per scorer with both responses of every pair."""
    prompts = [pair.prompt for pair in pairs]
    responses = [pair.response_a for pair in pairs] + [pair.response_b for pair in pairs]
    out = []
    for scorer in scorers:
        if not pairs:
            out.append([])
            continue
        scores = list(scorer.score(prompts + prompts, responses))
        if len(scores) != 2 * len(pairs):
            raise ValueError(f"reward scorer {scorer!r} returned {len(scores)} scores for {2 * len(pairs)} responses")
        values = []
        for value in scores:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"reward scorer {scorer!r} returned {value!r}; scores must be finite numbers")
            values.append(float(value))
        n = len(pairs)
        out.append([values[i] - values[n + i] for i in range(n)])
    return out


def _scorer_disagreement(pairs: list[Pair], scorers: list[RewardScorer], tiebreak: list[float]
                         ) -> list[tuple[float, int, str]]:
    margins = _margins(pairs, scorers)
    keyed = []
    for i in range(len(pairs)):
        values = [m[i] for m in margins]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        positive, negative = sum(v > 0 for v in values), sum(v < 0 for v in values)
        split = positive > 0 and negative > 0
        reason = (f"margins disagree in sign ({positive} prefer a, {negative} prefer b), std {std:.4g}" if split
                  else f"margins agree in sign, std {std:.4g}")
        keyed.append(((not split, -std, tiebreak[i]), (std, i, reason)))
    keyed.sort(key=lambda entry: entry[0])
    return [entry for _, entry in keyed]


def _annotator_disagreement(pairs: list[Pair], annotators: list[Annotator], tiebreak: list[float]
                            ) -> list[tuple[float, int, str]]:
    votes: list[list[str]] = [[] for _ in pairs]
    for annotator in annotators:
        name = getattr(annotator, "name", repr(annotator))
        results = annotator.annotate(pairs) if pairs else []
        if len(results) != len(pairs):
            raise ValueError(f"annotator {name!r} returned {len(results)} results for {len(pairs)} pairs")
        for i, record in enumerate(results):
            if record is not None:
                votes[i].append(record.label.value)
    keyed = []
    for i, labels in enumerate(votes):
        entropy = _entropy(labels)
        counts = ", ".join(f"{label} x{n}" for label, n in sorted(Counter(labels).items())) or "no labels"
        reason = f"vote entropy {entropy:.3f} bits over {len(labels)} of {len(annotators)} annotator(s): {counts}"
        keyed.append(((-entropy, tiebreak[i]), (entropy, i, reason)))
    keyed.sort(key=lambda entry: entry[0])
    return [entry for _, entry in keyed]


def _entropy(labels: list[Any]) -> float:
    """Shannon entropy in bits of the label distribution (0 when fewer than two judges voted)."""
    if len(labels) < 2:
        return 0.0
    total = len(labels)
    value = -sum((n / total) * math.log2(n / total) for n in Counter(labels).values())
    return value if value > 0 else 0.0
