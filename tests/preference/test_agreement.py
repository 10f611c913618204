"""Agreement statistics checked against independent plain-numpy formulas, published reference values and PandaLM."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from preference.agreement import (
    AgreementReport,
    agreement_report,
    fleiss_kappa_from_counts,
    krippendorff_alpha_nominal,
)
from preference.importers import read_preferences
from preference.schema import Label, PreferenceRecord

PANDALM = Path(__file__).parents[3] / "shared/data/pandalm/testset-v1.json"
PANDALM_LABELS = {1: "a", 2: "b", 0: "tie"}


# ---- independent reference implementations (textbook formulas, no statsmodels / krippendorff) ----

def fleiss_textbook(counts) -> float:
    """Fleiss (1971): mean per-subject agreement against chance from the category marginals."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)[0]
    p_i = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    p_j = counts.sum(axis=0) / counts.sum()
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    return (p_bar - p_e) / (1 - p_e)


def krippendorff_coincidence(matrix) -> float:
    """Nominal alpha from the coincidence matrix; units with fewer than 2 values are unpairable and dropped."""
    matrix = np.asarray(matrix, dtype=float)
    values = sorted(set(matrix[~np.isnan(matrix)].tolist()))
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in matrix.T:
        present = [index[v] for v in unit if not np.isnan(v)]
        m = len(present)
        if m < 2:
            continue
        for i, j in itertools.permutations(range(m), 2):
            o[present[i], present[j]] += 1 / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    observed = o.sum() - np.trace(o)
    expected = (np.outer(n_c, n_c).sum() - (n_c**2).sum()) / (n - 1)
    return 1 - observed / expected


def cohen_confusion(first: list[str], second: list[str]) -> float:
    cats = sorted(set(first) | set(second))
    table = np.zeros((len(cats), len(cats)))
    for a, b in zip(first, second, strict=True):
        table[cats.index(a), cats.index(b)] += 1
    total = table.sum()
    p_o = np.trace(table) / total
    p_e = (table.sum(axis=1) * table.sum(axis=0)).sum() / total**2
    return (p_o - p_e) / (1 - p_e)


def percent_pairs(units: list[list[str]]) -> float:
    shares = []
    for labels in units:
        pairs = list(itertools.combinations(labels, 2))
        shares.append(sum(a == b for a, b in pairs) / len(pairs))
    return float(np.mean(shares))


def binom_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided binomial p-value against p = 0.5 (symmetric, so twice the smaller tail)."""
    log_pmf = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(n + 1)]
    lower = sum(math.exp(x) for x in log_pmf[: k + 1])
    upper = sum(math.exp(x) for x in log_pmf[k:])
    return min(1.0, 2 * min(lower, upper))


def majority(labels: list[str]) -> str | None:
    ranked = Counter(labels).most_common()
    return None if len(ranked) > 1 and ranked[0][1] == ranked[1][1] else ranked[0][0]


# ---- published reference values ----

FLEISS_1971 = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
               [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
_ = np.nan
KRIPPENDORFF_CLASSIC = [[1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
                        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
                        [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
                        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _]]


def test_fleiss_reference_value_1971():
    assert round(fleiss_kappa_from_counts(FLEISS_1971), 3) == 0.210
    assert round(fleiss_textbook(FLEISS_1971), 3) == 0.210  # the test's own formula agrees with the literature


def test_krippendorff_reference_value_nominal():
    assert round(krippendorff_alpha_nominal(KRIPPENDORFF_CLASSIC), 3) == 0.743
    assert round(krippendorff_coincidence(KRIPPENDORFF_CLASSIC), 3) == 0.743


def test_helpers_return_none_when_undefined():
    assert fleiss_kappa_from_counts([[3, 0], [3, 0], [3, 0]]) is None  # expected agreement 1
    assert fleiss_kappa_from_counts([[2, 1]]) is None  # one unit
    assert krippendorff_alpha_nominal([[1, 1, 1], [1, 1, 1]]) is None  # one value only
    assert krippendorff_alpha_nominal([[1, _, 2], [_, 2, _]]) is None  # no unit rated twice


# ---- hand-made records ----

def record(unit: str, annotator: str, label: str, swapped: bool = False, shown_swapped: bool = False,
           ) -> PreferenceRecord:
    """A judgment of unit `unit` where `label` is in the unit's reference orientation (x left, y right).

    `swapped=True` stores the responses the other way round, with the label swapped to mean the same preference.
    """
    stored = Label(label).swapped() if swapped else Label(label)
    first, second = ("y", "x") if swapped else ("x", "y")
    return PreferenceRecord(prompt=f"prompt {unit}", response_a=f"{first}{unit}", response_b=f"{second}{unit}",
                            label=stored, annotator=annotator, source="test", item=unit,
                            metadata={"shown_swapped": True} if shown_swapped else {})


# Raters x units with missing ratings (None). Units 0-6 have 3 ratings, unit 7 has 2, unit 8 has 1.
TABLE = {
    "ann": ["a", "a", "b", "tie", "a", "b", "a", None, "b"],
    "bob": ["a", "b", "b", "tie", "a", None, "b", "a", None],
    "cat": ["a", "a", "b", "a", "b", "b", None, "b", None],
    "dan": [None, None, None, None, None, "a", "a", None, None],
}
# Which judgments are stored with the responses the other way round (must not change any statistic). None is the
# first judgment of its unit: the unit's orientation is its first record's (see test_orientation_...).
SWAPPED = {("bob", 1), ("cat", 3), ("dan", 6), ("cat", 4)}
# Which judgments were shown swapped (changes only position bias).
SHOWN_SWAPPED = {("ann", 0), ("bob", 2), ("cat", 5)}


@pytest.fixture()
def table_records() -> list[PreferenceRecord]:
    return [record(str(unit), name, label, swapped=(name, unit) in SWAPPED, shown_swapped=(name, unit) in SHOWN_SWAPPED)
            for unit in range(9) for name, labels in TABLE.items() if (label := labels[unit]) is not None]


def table_units() -> list[list[str]]:
    return [[labels[u] for labels in TABLE.values() if labels[u] is not None] for u in range(9)]


def test_hand_table_statistics_match_independent_formulas(table_records):
    report = agreement_report(table_records)
    units = table_units()
    assert (report.n_judgments, report.n_units, report.n_annotators) == (len(table_records), 9, 4)

    multi = [labels for labels in units if len(labels) >= 2]
    assert report.percent_agreement == pytest.approx(percent_pairs(multi))
    assert report.unanimous_units == sum(len(set(labels)) == 1 for labels in multi) == 2  # units 0 and 2

    # Fleiss on the units with the most common number of ratings (3): units 0-6.
    cats = ["a", "b", "tie"]
    three = [[labels.count(c) for c in cats] for labels in units if len(labels) == 3]
    assert report.fleiss_n_units == len(three) == 7
    assert report.fleiss_kappa == pytest.approx(fleiss_textbook(three))

    codes = {"a": 0, "b": 1, "tie": 2}
    matrix = [[np.nan if v is None else codes[v] for v in labels] for labels in TABLE.values()]
    assert report.krippendorff_alpha == pytest.approx(krippendorff_coincidence(matrix))

    expected_pairs = []
    for first, second in itertools.combinations(TABLE, 2):
        shared = [u for u in range(9) if TABLE[first][u] is not None and TABLE[second][u] is not None]
        if len(shared) >= 2:
            expected_pairs.append((first, second, len(shared),
                                   cohen_confusion([TABLE[first][u] for u in shared],
                                                   [TABLE[second][u] for u in shared])))
    got = [(c["annotator_1"], c["annotator_2"], c["n"], c["kappa"]) for c in report.cohen_kappa]
    assert [g[:3] for g in got] == [e[:3] for e in expected_pairs]
    assert [g[3] for g in got] == pytest.approx([e[3] for e in expected_pairs])
    assert ("ann", "dan") in {g[:2] for g in got} and ("bob", "dan") not in {g[:2] for g in got}  # 1 shared unit


def test_hand_table_majorities_and_consensus_agreement(table_records):
    report = agreement_report(table_records)
    units = table_units()
    majorities = [majority(labels) for labels in units]
    assert report.majority_counts == {"a": 4, "b": 3, "tie": 1, "both_bad": 0, "unresolved": 1}  # unit 7: a vs b
    assert report.majority_counts == {**{k: majorities.count(k) for k in ("a", "b", "tie", "both_bad")},
                                      "unresolved": majorities.count(None)}
    for name, labels in TABLE.items():
        used = [u for u in range(9) if labels[u] is not None and len(units[u]) >= 2 and majorities[u] is not None]
        own, cons = [labels[u] for u in used], [majorities[u] for u in used]
        stats = report.annotators[name]
        assert stats["n"] == len(used)
        assert stats["agreement_with_consensus"] == pytest.approx(np.mean([a == b for a, b in zip(own, cons)]))
        assert stats["kappa_with_consensus"] == pytest.approx(cohen_confusion(own, cons))


def test_position_bias_counts_labels_as_shown(table_records):
    report = agreement_report(table_records)
    # As shown: stored label, swapped again where the judgment was shown swapped; ties don't count.
    shown = [(r.label.swapped() if r.metadata.get("shown_swapped") else r.label) for r in table_records]
    k, n = shown.count(Label.A), shown.count(Label.A) + shown.count(Label.B)
    assert (k, n) == (13, 22)  # counted by hand from TABLE, SWAPPED and SHOWN_SWAPPED
    assert report.position_bias["n"] == n
    assert report.position_bias["share_a"] == pytest.approx(k / n)
    assert report.position_bias["p_value"] == pytest.approx(binom_two_sided_half(k, n))


def test_orientation_makes_swapped_judgments_agree():
    same = [record("0", "u", "a"), record("0", "v", "a", swapped=True)]
    report = agreement_report(same + [record("1", "u", "b"), record("1", "v", "b", swapped=True)])
    assert [r.label for r in same] == [Label.A, Label.B]  # stored labels differ...
    assert report.percent_agreement == 1.0  # ...but they prefer the same response
    assert report.unanimous_units == 2
    assert report.cohen_kappa[0]["kappa"] == pytest.approx(1.0)


def test_orientation_follows_the_first_record_of_the_unit():
    # Everyone prefers x in unit 0, but the first judgment stored it as (y, x): the consensus reads "b".
    report = agreement_report([record("0", "u", "a", swapped=True), record("0", "v", "a"), record("0", "w", "a")])
    assert report.majority_counts["b"] == 1 and report.majority_counts["a"] == 0
    assert report.unanimous_units == 1


def test_repeated_judgment_keeps_the_last_for_cohen():
    records = [record("0", "u", "a"), record("0", "v", "b"), record("0", "u", "b"),  # u changed their mind
               record("1", "u", "a"), record("1", "v", "a"), record("2", "u", "b"), record("2", "v", "b")]
    report = agreement_report(records)
    assert report.cohen_kappa == [{"annotator_1": "u", "annotator_2": "v", "kappa": pytest.approx(1.0), "n": 3}]
    assert report.n_judgments == 7


def test_no_multi_annotator_units_gives_none_not_a_crash():
    report = agreement_report([record(str(u), "solo", "a" if u % 2 else "b") for u in range(5)])
    assert report.fleiss_kappa is None and report.krippendorff_alpha is None
    assert report.cohen_kappa == [] and report.percent_agreement is None
    assert report.annotators["solo"] == {"n": 0, "agreement_with_consensus": None, "kappa_with_consensus": None}
    assert agreement_report([]).n_units == 0


def test_degenerate_kappas_become_none():
    report = agreement_report([record(str(u), name, "a") for u in range(4) for name in ("u", "v", "w")])
    assert report.fleiss_kappa is None and report.krippendorff_alpha is None
    assert [c["kappa"] for c in report.cohen_kappa] == [None, None, None]
    assert report.percent_agreement == 1.0 and report.unanimous_units == 4
    json.dumps(report.to_dict())  # None, not nan, so the JSON is strict


# ---- PandaLM ----

@pytest.fixture(scope="module")
def pandalm() -> tuple[np.ndarray, AgreementReport]:
    if not PANDALM.is_file():
        pytest.skip(f"{PANDALM} not present")
    rows = json.loads(PANDALM.read_text())
    labels = np.array([[PANDALM_LABELS[row[f"annotator{k}"]] for k in (1, 2, 3)] for row in rows])
    records = [r for result in read_preferences(PANDALM) for r in result.records]
    return labels, agreement_report(records)


def test_pandalm_counts(pandalm):
    labels, report = pandalm
    assert (report.n_judgments, report.n_units, report.n_annotators) == (2997, 999, 3)
    assert report.majority_counts == {"a": 422, "b": 472, "tie": 105, "both_bad": 0, "unresolved": 0}
    assert report.unanimous_units == 879
    assert report.label_counts == {**{k: int((labels == k).sum()) for k in ("a", "b", "tie")}, "both_bad": 0}


def test_pandalm_statistics_match_independent_formulas(pandalm):
    labels, report = pandalm
    cats = ["a", "b", "tie"]
    assert report.fleiss_n_units == 999
    assert report.fleiss_kappa == pytest.approx(fleiss_textbook([[list(row).count(c) for c in cats] for row in labels]))
    codes = np.vectorize(cats.index)(labels).T.astype(float)  # raters x units
    assert report.krippendorff_alpha == pytest.approx(krippendorff_coincidence(codes))
    assert report.percent_agreement == pytest.approx(percent_pairs(labels.tolist()))
    for entry, (i, j) in zip(report.cohen_kappa, itertools.combinations(range(3), 2), strict=True):
        assert (entry["annotator_1"], entry["annotator_2"], entry["n"]) == (
            f"pandalm:annotator{i + 1}", f"pandalm:annotator{j + 1}", 999)
        assert entry["kappa"] == pytest.approx(cohen_confusion(list(labels[:, i]), list(labels[:, j])))
    k, n = int((labels == "a").sum()), int(np.isin(labels, ["a", "b"]).sum())
    assert report.position_bias["n"] == n
    assert report.position_bias["share_a"] == pytest.approx(k / n)
    assert report.position_bias["p_value"] == pytest.approx(binom_two_sided_half(k, n))


def test_pandalm_annotators_against_majority(pandalm):
    labels, report = pandalm
    majorities = [majority(list(row)) for row in labels]
    for i in range(3):
        stats = report.annotators[f"pandalm:annotator{i + 1}"]
        assert stats["n"] == 999
        assert stats["agreement_with_consensus"] == pytest.approx(np.mean(labels[:, i] == np.array(majorities)))
        assert stats["kappa_with_consensus"] == pytest.approx(cohen_confusion(list(labels[:, i]), majorities))
