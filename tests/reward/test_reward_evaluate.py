"""reward.evaluate: accuracy without ties, grouped bootstrap, calibration, length bias, breakdowns, plot, errors.

The scorers below are small deterministic reward functions (length, keyword, a score stated in the response), not
mocks: `evaluate` sees them exactly as it would see a trained reward model.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from preference.schema import Label, PreferenceRecord, prompt_key
from reward.evaluate import EvalReport, evaluate
from reward.protocols import RewardScorer
from rlhfkit.core.stats import grouped_bootstrap_ci


class LengthScorer:
    """Reward = response length in characters. Counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, prompts, responses):
        assert len(prompts) == len(responses)
        self.calls.append(len(responses))
        return [float(len(r)) for r in responses]


class KeywordScorer:
    """Reward = 1 when the response contains the keyword, else 0."""

    def __init__(self, keyword: str = "good") -> None:
        self.keyword = keyword

    def score(self, prompts, responses):
        return [1.0 if self.keyword in r else 0.0 for r in responses]


class StatedScoreScorer:
    """Reward = the number a response starts with ("1.25|text" -> 1.25)."""

    def score(self, prompts, responses):
        return [float(r.split("|", 1)[0]) for r in responses]


class BrokenScorer:
    def __init__(self, out) -> None:
        self.out = out

    def score(self, prompts, responses):
        return self.out(responses)


def rec(prompt, a, b, label, annotator="ann", source="src", **kw) -> PreferenceRecord:
    return PreferenceRecord(prompt=prompt, response_a=a, response_b=b, label=Label(label), annotator=annotator,
                            source=source, timestamp="2025-01-01T00:00:00+00:00", **kw)


def test_scorers_satisfy_the_protocol():
    for scorer in (LengthScorer(), KeywordScorer(), StatedScoreScorer()):
        assert isinstance(scorer, RewardScorer)


# ------------------------------------------------------------------------------------------------------ accuracy


def ties_heavy():
    # LengthScorer: 2 decisive right, 1 decisive wrong, 5 human ties (whose rewards differ).
    return [
        rec("p1", "long answer", "short", "a"),
        rec("p2", "tiny", "a much longer answer", "b"),
        rec("p3", "longer one", "short", "b"),
        *[rec(f"t{i}", "x" * (i + 1), "y" * (2 * i + 3), "tie") for i in range(5)],
    ]


def test_accuracy_excludes_ties_and_both_bad():
    records = ties_heavy() + [rec("bb", "long both bad", "bad", "both_bad")]
    scorer = LengthScorer()
    report = evaluate(scorer, records, n_bootstrap=50)
    # Counting the 5 ties as correct would give 7/8, as wrong 2/8; only decisive pairs count: 2/3.
    assert report.accuracy == pytest.approx(2 / 3, abs=1e-12)
    c = report.counts
    assert (c.judgments, c.pairs, c.decisive, c.ties, c.both_bad, c.unresolved, c.flagged) == (9, 9, 3, 5, 1, 0, 0)
    # One scorer call with both responses of every scored pair (decisive + ties; both_bad is not scored).
    assert scorer.calls == [2 * 8]
    assert c.scored_pairs == 8
    # Ties: |r_a - r_b| = i + 2 for i in 0..4 -> mean 4; decisive |margins| are 6, 16, 5 -> median 6.
    assert report.ties.n == 5
    assert report.ties.mean_abs_margin == pytest.approx(4.0)
    assert report.ties.median_abs_decisive_margin == pytest.approx(6.0)
    assert report.ties.share_below_median_decisive == pytest.approx(4 / 5)  # 2, 3, 4, 5 < 6; 6 is not
    assert sorted(report.tie_abs_margins) == [2, 3, 4, 5, 6]


def test_reward_ties_count_half():
    records = [
        rec("p1", "long answer", "short", "a"),  # right
        rec("p2", "tiny", "a much longer answer", "b"),  # right
        rec("p3", "longer one", "short", "b"),  # wrong
        rec("p4", "same", "size", "a"),  # equal lengths: reward tie
    ]
    report = evaluate(LengthScorer(), records, n_bootstrap=0)
    assert report.accuracy == pytest.approx(2.5 / 4)
    assert report.counts.reward_ties == 1
    assert report.accuracy_ci is None
    assert any("half" in note for note in report.notes)


def test_orientation_follows_the_consensus_record():
    # The same pair judged in both display orders: the consensus keeps the first record's a/b meaning.
    records = [rec("p", "long answer", "short", "a", annotator="x"),
               rec("p", "short", "long answer", "b", annotator="y")]
    report = evaluate(LengthScorer(), records, n_bootstrap=0)
    assert report.counts.pairs == 1 and report.counts.decisive == 1
    assert report.accuracy == 1.0
    assert report.margins == [6.0]


def test_unresolved_and_flagged_pairs_are_excluded_and_counted():
    records = [
        rec("p1", "long answer", "short", "a"),
        rec("p2", "abc", "abcdef", "a", annotator="x"),  # a vs b: no majority
        rec("p2", "abc", "abcdef", "b", annotator="y"),
        rec("p3", "same", "same", "b", metadata={"flags": ["identical_responses"]}),
        rec("p4", "ctx answer", "x", "b", metadata={"flags": ["differing_context"]}),
        rec("p5", "", "nonempty", "b", metadata={"flags": ["empty_response"]}),  # kept
    ]
    report = evaluate(LengthScorer(), records, n_bootstrap=0)
    c = report.counts
    assert (c.pairs, c.decisive, c.unresolved, c.flagged) == (5, 2, 1, 2)
    assert c.flagged_by == {"identical_responses": 1, "differing_context": 1}
    assert report.accuracy == 1.0


# ----------------------------------------------------------------------------------------------------- bootstrap


def clustered(n_prompts: int, pairs_per_prompt: int, tag: str = ""):
    """KeywordScorer is right on every pair of 70% of the prompts and wrong on every pair of the rest."""
    records = []
    for p in range(n_prompts):
        right = p % 10 < 7
        for k in range(pairs_per_prompt):
            good, bad = f"good {k}", f"bad {k}"
            chosen, rejected = (good, bad) if right else (bad, good)
            label = "a" if k % 2 == 0 else "b"
            a, b = (chosen, rejected) if label == "a" else (rejected, chosen)
            records.append(rec(f"prompt {tag}{p}", a, b, label))
    return records


def test_bootstrap_interval_contains_estimate_and_shrinks_with_data():
    small = evaluate(KeywordScorer(), clustered(10, 1), n_bootstrap=400, seed=1)
    large = evaluate(KeywordScorer(), clustered(160, 1), n_bootstrap=400, seed=1)
    for report in (small, large):
        assert report.accuracy == pytest.approx(0.7)
        low, high = report.accuracy_ci
        assert low <= report.accuracy <= high
    assert (large.accuracy_ci[1] - large.accuracy_ci[0]) < 0.5 * (small.accuracy_ci[1] - small.accuracy_ci[0])


def test_bootstrap_resamples_prompt_groups():
    records = clustered(20, 10)  # 200 pairs, 20 prompts; right or wrong by whole prompt
    report = evaluate(KeywordScorer(), records, n_bootstrap=600, seed=3)
    assert report.n_prompt_groups == 20 and report.counts.decisive == 200
    correct = [1.0 if m > 0 else 0.0 for m in report.margins]
    keys = [prompt_key(r.prompt) for r in records]
    # Same computation as evaluate's, with its prompt groups.
    assert report.accuracy_ci == grouped_bootstrap_ci(correct, keys, n_bootstrap=600, seed=3)
    per_pair = grouped_bootstrap_ci(correct, list(range(len(correct))), n_bootstrap=600, seed=3)
    grouped_width = report.accuracy_ci[1] - report.accuracy_ci[0]
    per_pair_width = per_pair[1] - per_pair[0]
    # 20 independent prompts, not 200 independent pairs: about sqrt(10) ~ 3x wider.
    assert grouped_width > 2 * per_pair_width
    assert report.accuracy_ci[0] <= 0.7 <= report.accuracy_ci[1]


def test_bootstrap_is_reproducible_by_seed():
    records = clustered(30, 2)
    one = evaluate(KeywordScorer(), records, n_bootstrap=200, seed=7).accuracy_ci
    two = evaluate(KeywordScorer(), records, n_bootstrap=200, seed=7).accuracy_ci
    assert one == two


# --------------------------------------------------------------------------------------------------- calibration


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_ece_brier_log_loss_by_hand():
    # LengthScorer: r_a - r_b = 2, 2, -1, 0  ->  p(a) = s(2), s(2), s(-1), 0.5; outcomes (label == a) 1, 0, 0, 1.
    records = [
        rec("p1", "abcd", "ab", "a"),
        rec("p2", "wxyz", "wx", "b"),
        rec("p3", "ab", "abc", "b"),
        rec("p4", "abc", "xyz", "a"),
    ]
    report = evaluate(LengthScorer(), records, n_bootstrap=0, temperature=1.0)
    # Each decisive pair counts in both orientations: (p, y) and (1 - p, 1 - y).
    p = [sig(2), sig(2), sig(-1), 0.5]
    y = [1, 0, 0, 1]
    p, y = p + [1 - v for v in p], y + [1 - v for v in y]
    # Bins of width 0.1: s(2) = 0.881 -> bin 8 (2 points, observed 1/2); 1 - s(2) = 0.119 -> bin 1 (2, 1/2);
    # s(-1) = 0.269 -> bin 2 (1, 0); s(1) = 0.731 -> bin 7 (1, 1); 0.5 -> bin 5 (2, 1/2).
    ece = (2 / 8 * abs(sig(2) - 0.5) + 2 / 8 * abs(1 - sig(2) - 0.5) + 1 / 8 * abs(sig(-1) - 0)
           + 1 / 8 * abs(sig(1) - 1) + 2 / 8 * abs(0.5 - 0.5))
    cal = report.calibration
    assert cal.ece == pytest.approx(ece, abs=1e-12)
    assert cal.brier == pytest.approx(sum((pi - yi) ** 2 for pi, yi in zip(p, y)) / 8, abs=1e-12)
    log_loss = -sum(math.log(pi) if yi else math.log(1 - pi) for pi, yi in zip(p, y)) / 8
    assert cal.log_loss == pytest.approx(log_loss, abs=1e-12)
    assert [b.count for b in cal.bins] == [0, 2, 1, 0, 0, 2, 0, 1, 2, 0]
    assert cal.bins[8].observed == 0.5 and cal.bins[8].mean_predicted == pytest.approx(sig(2))
    assert cal.bins[0].mean_predicted is None
    assert cal.fitted_temperature is None and not cal.fit_in_sample
    # A temperature changes p: T = 2 gives s(1), s(1), s(-0.5), 0.5.
    warm = evaluate(LengthScorer(), records, n_bootstrap=0, temperature=2.0).calibration
    assert warm.brier == pytest.approx(((sig(1) - 1) ** 2 + sig(1) ** 2 + sig(-0.5) ** 2 + 0.25) / 4)


def test_a_calibrated_model_is_calibrated_even_when_the_winner_is_always_stored_first():
    # Humans pick the response with reward d over reward 0 with probability sigmoid(d): the model is calibrated.
    # Stored HH-style (winner always as `a`), scoring only "P(a wins)" against label == a would see one class and
    # report ECE near 0.4; counted in both orientations, calibration is judged fairly.
    rng = random.Random(7)
    records = []
    for i in range(4000):
        d = rng.uniform(-4, 4)
        first_wins = rng.random() < sig(d)
        winner, loser = (f"{d:.6f}|x{i}", f"0|y{i}") if first_wins else (f"0|y{i}", f"{d:.6f}|x{i}")
        records.append(rec(f"q{i}", winner, loser, "a"))
    cal = evaluate(StatedScoreScorer(), records, n_bootstrap=0, subsets=None).calibration
    assert cal.ece < 0.05


def test_temperature_fit_recovers_a_known_temperature():
    # Rewards r_a = d, r_b = 0; humans pick a with probability sigmoid(d / 2).
    rng = random.Random(5)
    records = []
    for i in range(3000):
        d = rng.uniform(-8, 8)
        label = "a" if rng.random() < sig(d / 2) else "b"
        records.append(rec(f"q{i}", f"{d:.6f}|a{i}", f"0|b{i}", label))
    report = evaluate(StatedScoreScorer(), records, n_bootstrap=0, fit_temperature=True, subsets=None)
    cal = report.calibration
    assert cal.fitted_temperature == pytest.approx(2.0, rel=0.15)
    assert cal.fit_in_sample and "in-sample" in cal.fit_note
    assert any("in-sample" in note for note in report.notes)
    # Fitting minimises log loss, so it cannot be worse than T = 1 on the same data.
    assert cal.fitted_log_loss <= cal.log_loss
    assert cal.fitted_ece < cal.ece


def test_temperature_fit_on_perfectly_ranked_pairs_says_it_hits_the_bound():
    records = [rec(f"p{i}", "x" * (i + 5), "y", "a") for i in range(6)]
    cal = evaluate(LengthScorer(), records, n_bootstrap=0, fit_temperature=True).calibration
    assert cal.fitted_temperature is not None and "order every decisive pair correctly" in cal.fit_note
    assert "in-sample" in cal.fit_note


# --------------------------------------------------------------------------------------------------- length bias


def test_length_bias_on_a_hand_made_set():
    records = [
        rec("p1", "good and long", "bad", "a"),  # human: longer; model: longer (right)
        rec("p2", "good", "bad but long", "a"),  # human: shorter; model: shorter (right)
        rec("p3", "fine", "good but long", "a"),  # human: shorter; model: longer (wrong)
        rec("p4", "short", "much longer", "b"),  # human: longer; model: reward tie (half)
        rec("p5", "good", "okay", "b"),  # equal lengths: out of the length shares
    ]
    report = evaluate(KeywordScorer(), records, n_bootstrap=0)
    lb = report.length_bias
    assert lb.n == 4
    assert lb.human_prefers_longer == pytest.approx(2 / 4)
    assert lb.model_prefers_longer == pytest.approx(2.5 / 4)
    assert lb.accuracy_human_prefers_shorter.n == 2
    assert lb.accuracy_human_prefers_shorter.accuracy == pytest.approx(1 / 2)
    assert lb.accuracy_human_prefers_longer.n == 2
    assert lb.accuracy_human_prefers_longer.accuracy == pytest.approx(1.5 / 2)
    assert report.accuracy == pytest.approx((1 + 1 + 0 + 0.5 + 0) / 5)


# ----------------------------------------------------------------------------------------------------- breakdowns


def test_accuracy_by_source_annotator_and_agreement():
    records = [
        # Source s1: unanimous (3 x a), right.
        *[rec("p1", "long answer", "short", "a", annotator=n, source="s1") for n in ("x", "y", "z")],
        # Source s1: 2/3 agree on b, right.
        rec("p2", "tiny", "a much longer answer", "b", annotator="x", source="s1"),
        rec("p2", "tiny", "a much longer answer", "b", annotator="y", source="s1"),
        rec("p2", "tiny", "a much longer answer", "a", annotator="z", source="s1"),
        # Source s2: a, a, b, tie -> a with agreement 0.5; wrong.
        rec("p3", "x", "longer", "a", annotator="x", source="s2"),
        rec("p3", "x", "longer", "a", annotator="y", source="s2"),
        rec("p3", "x", "longer", "b", annotator="z", source="s2"),
        rec("p3", "x", "longer", "tie", annotator="w", source="s2"),
        # Source s2: single judgment, right.
        rec("p4", "longer again", "no", "a", annotator="w", source="s2"),
    ]
    report = evaluate(LengthScorer(), records, n_bootstrap=0)
    assert report.counts.judgments == 11 and report.counts.decisive == 4
    by_source = {row.name: row for row in report.subsets}
    assert report.subsets_by == "source"
    assert (by_source["s1"].n, by_source["s1"].accuracy) == (2, 1.0)
    assert (by_source["s2"].n, by_source["s2"].accuracy) == (2, 0.5)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(1, 2, alpha=0.05, method="wilson")
    assert (by_source["s2"].ci_low, by_source["s2"].ci_high) == pytest.approx((low, high))
    levels = {row.name: row for row in report.agreement_levels}
    assert list(levels) == ["1.0", "[0.66, 1)", "< 0.66"]
    assert (levels["1.0"].n, levels["1.0"].accuracy) == (2, 1.0)
    assert (levels["[0.66, 1)"].n, levels["[0.66, 1)"].accuracy) == (1, 1.0)
    assert (levels["< 0.66"].n, levels["< 0.66"].accuracy) == (1, 0.0)
    assert any("single judgment" in note for note in report.notes)

    by_annotator = {row.name: row for row in evaluate(LengthScorer(), records, n_bootstrap=0,
                                                        subsets="annotator").subsets}
    # Pairs each annotator judged, scored against the consensus: x, y, z judged p1-p3; w judged p3 and p4.
    assert {name: (row.n, row.accuracy) for name, row in by_annotator.items()} == {
        "w": (2, 0.5), "x": (3, 2 / 3), "y": (3, 2 / 3), "z": (3, 2 / 3)}
    assert evaluate(LengthScorer(), records, n_bootstrap=0, subsets=None).subsets == []


# ------------------------------------------------------------------------------------------------ report and plot


def test_to_dict_is_json_ready():
    report = evaluate(LengthScorer(), ties_heavy(), n_bootstrap=20, fit_temperature=True)
    data = report.to_dict()
    text = json.dumps(data, allow_nan=False)
    assert "margins" not in data and json.loads(text)["counts"]["ties"] == 5
    assert isinstance(data["accuracy_ci"], list) and all(isinstance(v, float) for v in data["accuracy_ci"])
    empty = [b for b in data["calibration"]["bins"] if b["count"] == 0]
    assert empty and all(b["mean_predicted"] is None and b["observed"] is None for b in empty)
    assert len(report.to_dict(include_margins=True)["margins"]) == 3


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fit", [False, True])
def test_plot_writes_one_png(tmp_path, fit):
    report = evaluate(KeywordScorer(), clustered(12, 2) + [rec("t", "good one", "bad one", "tie")],
                      n_bootstrap=50, fit_temperature=fit)
    assert isinstance(report, EvalReport)
    out = report.plot(tmp_path / "sub" / "eval.png")
    assert out == tmp_path / "sub" / "eval.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert [p.name for p in out.parent.iterdir()] == ["eval.png"]  # no temporary file left behind


def test_plot_without_subsets_or_ties(tmp_path):
    records = [rec(f"p{i}", "abc", "ab" if i % 3 else "abcd", "a") for i in range(8)]
    report = evaluate(LengthScorer(), records, n_bootstrap=0, subsets=None)
    assert report.plot(tmp_path / "e.png").read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------------------------------- bad input


def test_no_records():
    with pytest.raises(ValueError, match="no records"):
        evaluate(LengthScorer(), [])


def test_no_decisive_pair():
    records = [rec("p1", "a", "bb", "tie"), rec("p2", "c", "dd", "both_bad"),
               rec("p3", "e", "ff", "a", annotator="x"), rec("p3", "e", "ff", "b", annotator="y")]
    scorer = LengthScorer()
    with pytest.raises(ValueError, match="cannot compute accuracy: every pair is a tie, both_bad or unresolved"):
        evaluate(scorer, records)
    assert scorer.calls == []  # nothing scored for nothing


def test_wrong_number_of_scores():
    scorer = BrokenScorer(lambda responses: [1.0] * (len(responses) - 1))
    with pytest.raises(ValueError, match=r"returned 5 scores for 6 responses \(3 pairs x 2\)"):
        evaluate(scorer, ties_heavy()[:3])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores(bad):
    scorer = BrokenScorer(lambda responses: [1.0, bad, 2.0, bad, bad, 0.0])
    with pytest.raises(ValueError, match=r"returned 3 non-finite score\(s\)"):
        evaluate(scorer, ties_heavy()[:3])


def test_non_numeric_scores():
    scorer = BrokenScorer(lambda responses: ["high"] * len(responses))
    with pytest.raises(ValueError, match="one number per response"):
        evaluate(scorer, ties_heavy()[:3])


@pytest.mark.parametrize("kwargs, message", [
    ({"subsets": "model"}, "subsets must be"),
    ({"temperature": 0.0}, "temperature must be"),
    ({"temperature": float("nan")}, "temperature must be"),
    ({"n_bootstrap": -1}, "n_bootstrap"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate(LengthScorer(), ties_heavy(), **kwargs)


class BarScorer(LengthScorer):
    """A scorer that can draw a progress bar (as rlhfkit's reward models do): records whether it was asked to."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[bool] = []

    def score(self, prompts, responses, progress=False):
        self.asked.append(progress)
        return super().score(prompts, responses)


def test_progress_reaches_scorers_that_draw_a_bar_and_others_are_called_as_the_protocol_says():
    records = [rec(f"p{i}", "longer answer", "short", "a") for i in range(4)]
    bar = BarScorer()
    evaluate(bar, records, n_bootstrap=0, progress=True)
    evaluate(bar, records, n_bootstrap=0)
    assert bar.asked == [True, False]
    plain = LengthScorer()  # no progress parameter: never passed one
    assert evaluate(plain, records, n_bootstrap=0, progress=True).accuracy == 1.0
