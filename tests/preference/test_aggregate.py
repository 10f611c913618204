"""Consensus labels: methods, orientation, margins, grouping, weights and the reliability estimate."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from preference.aggregate import aggregate, annotator_reliability
from preference.importers import read_preferences
from preference.schema import Label, PreferenceRecord, Strength

PANDALM = Path(__file__).parents[3] / "shared/data/pandalm/testset-v1.json"


def judge(label: str, annotator: str, *, swapped: bool = False, item: str | None = None, prompt: str = "p",
          strength: Strength | None = None) -> PreferenceRecord:
    """A judgment of the pair (x, y); `label` means x/y as if shown x first. `swapped=True` shows y first, so the
    stored label is swapped to keep the same preference."""
    first, second = ("y", "x") if swapped else ("x", "y")
    return PreferenceRecord(prompt=prompt, response_a=first, response_b=second,
                            label=Label(label).swapped() if swapped else Label(label), annotator=annotator,
                            source="test", item=item, strength=strength)


def test_majority_puts_swapped_judgments_in_the_first_orientation():
    records = [judge("a", "u"), judge("a", "v", swapped=True), judge("b", "w")]
    assert records[1].label == Label.B  # stored as "b" because it was shown the other way round
    [consensus] = aggregate(records)
    assert consensus.label == Label.A
    assert consensus.votes == {Label.A: 2, Label.B: 1}
    assert consensus.record is records[0]
    assert consensus.n_judgments == 3 and consensus.agreement == pytest.approx(2 / 3)
    assert consensus.annotators == ["u", "v", "w"]


def test_consensus_keeps_the_first_records_orientation_when_it_is_swapped():
    [consensus] = aggregate([judge("a", "u", swapped=True), judge("a", "v"), judge("a", "w")])
    assert consensus.label == Label.B  # all prefer x; the first record shows x second
    assert consensus.record.response_b == "x"
    assert consensus.votes == {Label.B: 3}


def test_plurality_tie_is_unresolved():
    [consensus] = aggregate([judge("a", "u"), judge("b", "v"), judge("tie", "w"), judge("tie", "z"),
                             judge("a", "q")])
    assert consensus.label is None
    assert consensus.agreement == 0.0 and consensus.margin is None
    assert consensus.votes == {Label.A: 2, Label.B: 1, Label.TIE: 2}


def test_unanimous():
    agreeing = [judge("b", "u"), judge("b", "v", swapped=True)]
    assert aggregate(agreeing, method="unanimous")[0].label == Label.B
    split = aggregate(agreeing + [judge("a", "w")], method="unanimous")[0]
    assert split.label is None and split.agreement == 0.0
    assert aggregate(agreeing + [judge("a", "w")], method="majority")[0].label == Label.B


def test_margin_is_the_mean_over_agreeing_judgments_with_a_strength():
    [consensus] = aggregate([
        judge("a", "u", strength=Strength.STRONG),
        judge("a", "v", strength=Strength.SLIGHT, swapped=True),
        judge("a", "w"),  # no strength: not in the mean
        judge("b", "z", strength=Strength.CLEAR),  # disagrees: not in the mean
    ])
    assert consensus.label == Label.A
    assert consensus.margin == pytest.approx((2.0 + 0.5) / 2)
    assert aggregate([judge("a", "u"), judge("a", "v")])[0].margin is None


def test_by_pair_pools_items_by_unit_keeps_them_apart():
    records = [judge("a", "u", item="1"), judge("a", "v", item="1"),
               judge("b", "u", item="2"), judge("b", "v", item="2", swapped=True), judge("b", "w", item="2")]
    [pooled] = aggregate(records, by="pair")
    assert pooled.label == Label.B and pooled.n_judgments == 5 and pooled.votes == {Label.A: 2, Label.B: 3}
    units = aggregate(records, by="unit")
    assert [(c.record.item, c.label, c.n_judgments) for c in units] == [("1", Label.A, 2), ("2", Label.B, 3)]
    assert units[0].key == records[0].unit_id and pooled.key == records[0].pair_id


def test_results_come_in_first_seen_order():
    records = [judge("a", "u", prompt="second"), judge("b", "u", prompt="first"), judge("a", "v", prompt="second")]
    assert [c.record.prompt for c in aggregate(records)] == ["second", "first"]
    assert aggregate([]) == []


def test_weighted_reliable_annotator_outvotes_two_unreliable():
    records = [judge("a", "expert"), judge("b", "novice1"), judge("b", "novice2", swapped=True)]
    weights = {"expert": 3.0, "novice1": 1.0, "novice2": 1.0}
    assert aggregate(records, method="majority")[0].label == Label.B
    [consensus] = aggregate(records, method="weighted", weights=weights)
    assert consensus.label == Label.A
    assert consensus.agreement == pytest.approx(1 / 3)  # agreement counts judgments, not weight
    even = {"expert": 2.0, "novice1": 1.0, "novice2": 1.0}
    assert aggregate(records, method="weighted", weights=even)[0].label is None  # 2 vs 2


def test_reliability_formula_on_a_small_case():
    records = [judge("a", "u", prompt="1"), judge("a", "v", prompt="1"), judge("b", "w", prompt="1"),
               judge("a", "u", prompt="2"), judge("a", "v", prompt="2"), judge("a", "w", prompt="2")]
    # Unit 1: u's others (v, w) tie, so do v's: not counted; w's others say a and w disagrees. Unit 2: all agree.
    # u, v: 1 of 1 -> (1+1)/(1+2); w: 1 of 2 -> (1+1)/(2+2).
    assert annotator_reliability(records) == pytest.approx({"u": 2 / 3, "v": 2 / 3, "w": 1 / 2})


def consistent_and_random(n_units: int = 40, seed: int = 7) -> list[PreferenceRecord]:
    rng = np.random.default_rng(seed)
    records = []
    for unit in range(n_units):
        truth = str(rng.choice(["a", "b"]))
        for name in ("c1", "c2", "c3"):
            other = "b" if truth == "a" else "a"
            records.append(judge(truth if rng.random() < 0.9 else other, name, prompt=f"u{unit}",
                                 swapped=bool(rng.random() < 0.3)))
        records.append(judge(str(rng.choice(["a", "b", "tie"])), "random", prompt=f"u{unit}"))
    return records


def test_reliability_ranks_a_random_annotator_below_consistent_ones():
    reliability = annotator_reliability(consistent_and_random())
    assert set(reliability) == {"c1", "c2", "c3", "random"}
    assert reliability["random"] < 0.6 < min(reliability[name] for name in ("c1", "c2", "c3"))


def test_weighted_without_weights_uses_estimated_reliability():
    contested = [judge("a", "c1", prompt="contested"), judge("b", "random", prompt="contested")]
    records = consistent_and_random() + contested
    by_prompt = {c.record.prompt: c for c in aggregate(records, method="weighted")}
    assert aggregate(contested)[0].label is None  # one vote each
    assert by_prompt["contested"].label == Label.A


def test_invalid_arguments_are_refused_with_a_reason():
    records = [judge("a", "u")]
    with pytest.raises(ValueError, match="unknown aggregation method 'mean'"):
        aggregate(records, method="mean")
    with pytest.raises(ValueError, match="unknown grouping by='prompt'"):
        aggregate(records, by="prompt")
    with pytest.raises(ValueError, match="no weight for annotator"):
        aggregate(records, method="weighted", weights={"someone": 1.0})
    with pytest.raises(ValueError, match="only used by method='weighted'"):
        aggregate(records, weights={"u": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        aggregate(records, method="weighted", weights={"u": -1.0})


# ---- PandaLM, checked against the raw JSON ----

@pytest.fixture(scope="module")
def pandalm() -> tuple[list[dict], list[PreferenceRecord]]:
    if not PANDALM.is_file():
        pytest.skip(f"{PANDALM} not present")
    rows = json.loads(PANDALM.read_text())
    return rows, [r for result in read_preferences(PANDALM) for r in result.records]


VOTE = {1: "a", 2: "b", 0: "tie"}


def strict_majority(labels: list[str]) -> str | None:
    ranked = Counter(labels).most_common()
    return None if len(ranked) > 1 and ranked[0][1] == ranked[1][1] else ranked[0][0]


def test_pandalm_majority_by_unit(pandalm):
    rows, records = pandalm
    consensus = aggregate(records, by="unit")
    got = Counter(c.label.value if c.label else None for c in consensus)
    assert got == {"a": 422, "b": 472, "tie": 105}
    assert got == Counter(strict_majority([VOTE[row[f"annotator{k}"]] for k in (1, 2, 3)]) for row in rows)
    assert sum(c.label is not None for c in aggregate(records, method="unanimous", by="unit")) == 879


def test_pandalm_by_pair_pools_items_showing_the_same_pair(pandalm):
    rows, records = pandalm
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        extra = row["input"] if isinstance(row.get("input"), str) and row["input"].strip() else None
        prompt = f"{row['instruction']}\n\n{extra}" if extra else row["instruction"]
        r1, r2 = str(row["response1"]), str(row["response2"])
        groups.setdefault((prompt, frozenset((r1, r2))), []).append(row)
    expected = Counter()
    for group in groups.values():
        first = str(group[0]["response1"])
        # A later item showing the pair the other way round has its a/b votes swapped.
        votes = [({"a": "b", "b": "a"}.get(v, v) if str(row["response1"]) != first else v)
                 for row in group for v in [VOTE[row[f"annotator{k}"]] for k in (1, 2, 3)]]
        expected[strict_majority(votes)] += 1
    consensus = aggregate(records, by="pair")
    assert len(consensus) == len(groups) == 863
    assert sum(c.n_judgments for c in consensus) == 2997
    assert Counter(c.label.value if c.label else None for c in consensus) == expected
