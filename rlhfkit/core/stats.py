"""Statistics every layer reports with: the grouped bootstrap interval and the logistic function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rlhfkit.core.errors import InputError

CI_LEVEL = 0.95
"""The confidence level of every interval rlhfkit reports."""


def sigmoid(x: Any) -> Any:
    """1 / (1 + e^-x) without overflow for any x: a float for a number, an array for an array."""
    value = np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=float)))
    return float(value) if value.ndim == 0 else value


def grouped_bootstrap_ci(values: Sequence[float], groups: Sequence[Any], *, n_bootstrap: int = 1000, seed: int = 0,
                         level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(values), resampling whole groups with replacement.

    Each replicate draws as many groups as there are, and its statistic is sum(values) / count over the drawn
    groups' members. With one group per value this is the ordinary per-item bootstrap.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0 or len(groups) != values.size:
        raise ValueError(f"need one group per value and at least one value; got {values.size} values, "
                         f"{len(groups)} groups")
    if n_bootstrap < 1:
        raise InputError(f"n_bootstrap must be >= 1, not {n_bootstrap}")
    index: dict[Any, int] = {}
    members = np.array([index.setdefault(group, len(index)) for group in groups])
    sums = np.bincount(members, weights=values)
    sizes = np.bincount(members).astype(float)
    n_groups = len(sums)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_bootstrap)
    chunk = max(1, 4_000_000 // n_groups)  # bound memory at ~32 MB of indices
    for start in range(0, n_bootstrap, chunk):
        stop = min(n_bootstrap, start + chunk)
        draws = rng.integers(0, n_groups, size=(stop - start, n_groups))
        stats[start:stop] = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return float(low), float(high)
