"""Inter-annotator agreement of preference judgments: Fleiss' kappa, Krippendorff's alpha, pairwise Cohen's kappa,
percent agreement, position bias and each annotator's agreement with the consensus.

The rated unit is `record.unit_id` (the item when the source has items, else the pair). Labels of one unit are put
into the orientation of its first record, so two annotators who saw the responses in opposite positions but
preferred the same response count as agreeing. The statistics come from statsmodels and krippendorff; this module
only builds their tables and turns undefined values (no variation, no shared units) into None instead of nan.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from preference.aggregate import oriented_groups, strict_max
from preference.schema import Label, PreferenceRecord

LABELS = tuple(Label)
CODE = {label: code for code, label in enumerate(LABELS)}  # numeric codes for the krippendorff matrix


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def fleiss_kappa_from_counts(table: Any) -> float | None:
    """Fleiss' kappa of a units x categories count table (every row sums to the same number of ratings).

    None where undefined: fewer than 2 units or ratings per unit, or all ratings in one category (expected agreement 1).
    """
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[0] < 2 or table.sum(axis=1).min() < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        from statsmodels.stats.inter_rater import fleiss_kappa  # scipy and statsmodels: seconds to import

        return _finite(fleiss_kappa(table, method="fleiss"))


def krippendorff_alpha_nominal(matrix: Any) -> float | None:
    """Krippendorff's alpha (nominal) of a raters x units matrix of numeric codes, NaN where a rater gave none.

    None where undefined: fewer than two distinct values, or no unit rated twice.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or np.unique(matrix[~np.isnan(matrix)]).size < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        try:
            import krippendorff

            return _finite(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal"))
        except (ValueError, ZeroDivisionError):
            return None


def cohen_kappa_from_pairs(first: list[Label], second: list[Label]) -> float | None:
    """Cohen's kappa of two aligned label lists; None when expected agreement is 1 (both always gave one label)."""
    if len(first) != len(second) or not first:
        return None
    table = np.zeros((len(LABELS), len(LABELS)))
    for a, b in zip(first, second, strict=True):
        table[CODE[a], CODE[b]] += 1
    with np.errstate(divide="ignore", invalid="ignore"):
        from statsmodels.stats.inter_rater import cohens_kappa

        return _finite(cohens_kappa(table, return_results=False))


@dataclasses.dataclass
class AgreementReport:
    """Agreement statistics of a set of judgments; `None` marks a statistic that is undefined for the data."""

    n_judgments: int
    n_units: int
    n_annotators: int
    label_counts: dict[str, int]  # judgments per label, as stored
    majority_counts: dict[str, int]  # units per majority label, plus "unresolved"
    unanimous_units: int  # units with >= 2 judgments that all agree
    percent_agreement: float | None  # mean share of agreeing judgment pairs over units with >= 2 judgments
    fleiss_kappa: float | None
    fleiss_n_units: int  # units used: those with the most common number (>= 2) of ratings
    krippendorff_alpha: float | None
    cohen_kappa: list[dict[str, Any]]  # {annotator_1, annotator_2, kappa, n} per pair with >= 2 shared units
    position_bias: dict[str, Any]  # {share_a, n, p_value} of a/b judgments as shown
    annotators: dict[str, dict[str, Any]]  # name -> {n, agreement_with_consensus, kappa_with_consensus}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _position_bias(records: list[PreferenceRecord]) -> dict[str, Any]:
    """Share of "a" among a/b judgments as the annotator SAW them: a judge who favours the left response shows
    share_a far from 0.5 whatever the stored orientation. Records whose display order is unknown (HH-RLHF and TRL
    files always store `chosen` first: `metadata["position_unknown"]`) are left out; none left -> None."""
    known = [r for r in records if not r.metadata.get("position_unknown")]
    shown = [r.label.swapped() if r.metadata.get("shown_swapped") else r.label for r in known]
    n = sum(label in (Label.A, Label.B) for label in shown)
    k = sum(label == Label.A for label in shown)
    from scipy.stats import binomtest

    return {"share_a": k / n if n else None, "n": n, "p_value": float(binomtest(k, n, 0.5).pvalue) if n else None}


def agreement_report(records: Iterable[PreferenceRecord]) -> AgreementReport:
    """All agreement statistics over rated units (`unit_id`), labels in each unit's first orientation."""
    records = list(records)
    groups = list(oriented_groups(records, "unit").values())
    units = [[label for _, label in group] for group in groups]
    # One label per annotator per unit (the last, as a later judgment supersedes an earlier one) for the
    # rater-based statistics (Krippendorff, Cohen).
    by_rater: list[dict[str, Label]] = [{rec.annotator: label for rec, label in group} for group in groups]
    annotators = list(dict.fromkeys(r.annotator for r in records))
    multi = [labels for labels in units if len(labels) >= 2]
    majorities = [strict_max(dict(Counter(labels))) for labels in units]

    # Percent agreement: share of agreeing (unordered) judgment pairs within each unit, averaged over units.
    pair_shares = [sum(c * (c - 1) for c in Counter(labels).values()) / (len(labels) * (len(labels) - 1))
                   for labels in multi]

    # Fleiss' kappa needs the same number of ratings per unit: use the most common count (larger one on a tie).
    sizes = Counter(len(labels) for labels in multi)
    size = max(sizes, key=lambda s: (sizes[s], s)) if sizes else 0
    fleiss_rows = [[labels.count(label) for label in LABELS] for labels in multi if len(labels) == size]

    matrix = np.full((len(annotators), len(units)), np.nan)
    row_of = {name: i for i, name in enumerate(annotators)}
    for j, votes in enumerate(by_rater):
        for name, label in votes.items():
            matrix[row_of[name], j] = CODE[label]

    cohen = []
    for first, second in itertools.combinations(annotators, 2):
        shared = [votes for votes in by_rater if first in votes and second in votes]
        if len(shared) >= 2:
            kappa = cohen_kappa_from_pairs([v[first] for v in shared], [v[second] for v in shared])
            cohen.append({"annotator_1": first, "annotator_2": second, "kappa": kappa, "n": len(shared)})

    # Each annotator against the unit's majority (which includes their own vote) on units where one exists.
    versus: dict[str, tuple[list[Label], list[Label]]] = {name: ([], []) for name in annotators}
    for group, majority in zip(groups, majorities, strict=True):
        if len(group) >= 2 and majority is not None:
            for rec, label in group:
                versus[rec.annotator][0].append(label)
                versus[rec.annotator][1].append(majority)
    per_annotator = {
        name: {"n": len(own), "agreement_with_consensus": (sum(a == b for a, b in zip(own, cons)) / len(own))
               if own else None, "kappa_with_consensus": cohen_kappa_from_pairs(own, cons)}
        for name, (own, cons) in versus.items()
    }

    stored = Counter(r.label for r in records)
    resolved = Counter(majorities)
    return AgreementReport(
        n_judgments=len(records),
        n_units=len(units),
        n_annotators=len(annotators),
        label_counts={label.value: stored[label] for label in LABELS},
        majority_counts={**{label.value: resolved[label] for label in LABELS}, "unresolved": resolved[None]},
        unanimous_units=sum(len(set(labels)) == 1 for labels in multi),
        percent_agreement=sum(pair_shares) / len(pair_shares) if pair_shares else None,
        fleiss_kappa=fleiss_kappa_from_counts(fleiss_rows) if len(fleiss_rows) >= 2 else None,
        fleiss_n_units=len(fleiss_rows),
        krippendorff_alpha=krippendorff_alpha_nominal(matrix) if multi else None,
        cohen_kappa=cohen,
        position_bias=_position_bias(records),
        annotators=per_annotator,
    )
