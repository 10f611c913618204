"""Active selection with small deterministic scorers and annotators (plain rules written here, not mocks)."""

from __future__ import annotations

import math

import pytest

from annotation.base import Annotator
from annotation.select import STRATEGIES, RewardScorer, Selection, select_pairs
from preference.pairs import Pair
from preference.schema import Label, PreferenceRecord, Strength


class LengthScorer:
    """Longer responses score higher."""

    def score(self, prompts, responses):
        assert len(prompts) == len(responses)
        return [float(len(response)) for response in responses]


class KeywordScorer:
    """Responses score by how often they say `word`."""

    def __init__(self, word: str):
        self.word = word

    def score(self, prompts, responses):
        return [float(response.lower().count(self.word)) for response in responses]


class ConstantScorer:
    def score(self, prompts, responses):
        return [1.0] * len(responses)


class BrokenScorer:
    def __init__(self, values):
        self.values = values

    def score(self, prompts, responses):
        return self.values


class RuleAnnotator:
    """Prefers the response the rule scores higher; equal -> tie; None when the rule abstains."""

    def __init__(self, name, rule):
        self.name = name
        self.rule = rule

    def annotate(self, pairs):
        out = []
        for pair in pairs:
            a, b = self.rule(pair.response_a), self.rule(pair.response_b)
            if a is None or b is None:
                out.append(None)
                continue
            label = Label.A if a > b else Label.B if b > a else Label.TIE
            out.append(PreferenceRecord(pair.prompt, pair.response_a, pair.response_b, label, self.name, "test",
                                        Strength.CLEAR if label in (Label.A, Label.B) else None))
        return out


# Margins r(a) - r(b) of the two scorers: length and the keyword "please".
PAIRS = [
    Pair("p0", "a much longer answer", "short"),                      # length +15, keyword  0
    Pair("p1", "abcd", "wxyz"),                                       # length   0, keyword  0
    Pair("p2", "please", "please please help me now"),                # length -18, keyword -1
    Pair("p3", "please please", "no"),                                # length +11, keyword +2
    Pair("p4", "ok", "fine."),                                        # length  -3, keyword  0
    Pair("p5", "thanks please", "thanks"),                            # length  +7, keyword +1
    Pair("p6", "no", "please no"),                                    # length  -7, keyword -1
    Pair("p7", "a please", "long answer without the word"),           # length -20, keyword +1: opposite signs
    Pair("p8", "please please please", "a really long answer here"),  # length  -5, keyword +3: opposite signs
]


def prompts_of(selections: list[Selection]) -> list[str]:
    return [s.pair.prompt for s in selections]


def test_scorers_and_annotators_satisfy_the_protocols():
    assert isinstance(LengthScorer(), RewardScorer)
    assert isinstance(RuleAnnotator("x", len), Annotator)
    assert STRATEGIES == ("random", "uncertainty", "disagreement")


def test_random_is_a_seeded_sample():
    pairs = [Pair(f"q{i}", "a", "b") for i in range(50)]
    first = select_pairs(pairs, "random", 10, seed=1)
    assert len(first) == 10 and len({s.pair.prompt for s in first}) == 10
    assert prompts_of(first) == prompts_of(select_pairs(pairs, "random", 10, seed=1))
    assert prompts_of(first) != prompts_of(select_pairs(pairs, "random", 10, seed=2))
    assert all(0 <= s.score < 1 and "seed 1" in s.reason for s in first)
    # a smaller budget takes a prefix of the same ranking
    assert prompts_of(select_pairs(pairs, "random", 4, seed=1)) == prompts_of(first)[:4]


def test_uncertainty_picks_the_smallest_margins():
    chosen = select_pairs(PAIRS, "uncertainty", 4, scorers=[LengthScorer()])
    assert prompts_of(chosen)[:3] == ["p1", "p4", "p8"]  # |margins| 0, 3, 5, then 7 (p5 and p6: the seed decides)
    assert [s.score for s in chosen] == [0.0, 3.0, 5.0, 7.0]
    assert "over 1 scorer" in chosen[0].reason
    fourth = {select_pairs(PAIRS, "uncertainty", 4, seed=seed, scorers=[LengthScorer()])[3].pair.prompt
              for seed in range(20)}
    assert fourth == {"p5", "p6"}


def test_uncertainty_averages_the_scorers():
    scorers = [LengthScorer(), KeywordScorer("please")]
    chosen = select_pairs(PAIRS, "uncertainty", len(PAIRS), scorers=scorers)
    margins = {}
    for pair in PAIRS:
        ms = [sc.score([pair.prompt] * 2, [pair.response_a, pair.response_b]) for sc in scorers]
        margins[pair.prompt] = abs(sum(m[0] - m[1] for m in ms) / 2)
    assert prompts_of(chosen) == sorted(margins, key=margins.get)
    assert [s.score for s in chosen] == pytest.approx(sorted(margins.values()))


def test_disagreement_between_scorers_puts_opposite_signs_first():
    chosen = select_pairs(PAIRS, "disagreement", len(PAIRS), scorers=[LengthScorer(), KeywordScorer("please")])
    # opposite signs first, largest spread (population std of the two margins) first within each group
    assert prompts_of(chosen) == ["p7", "p8", "p2", "p0", "p3", "p5", "p6", "p4", "p1"]
    assert [s.score for s in chosen[:2]] == [10.5, 4.0]  # |-20 - 1| / 2, |-5 - 3| / 2
    assert all("disagree in sign" in s.reason for s in chosen[:2])
    assert not any("disagree in sign" in s.reason for s in chosen[2:])
    assert chosen[2].score > chosen[1].score  # p2 spreads more than p8 yet ranks lower: its signs agree


def test_disagreement_between_annotators_uses_vote_entropy():
    annotators = [
        RuleAnnotator("longer", len),
        RuleAnnotator("polite", lambda text: text.count("please")),
        RuleAnnotator("shorter", lambda text: -len(text)),
    ]
    chosen = select_pairs(PAIRS, "disagreement", len(PAIRS), annotators=annotators)
    scores = {s.pair.prompt: s.score for s in chosen}
    # p1: longer tie, polite tie, shorter tie -> all agree -> 0 bits
    assert scores["p1"] == 0.0
    # p0: a, tie, b -> three different labels -> log2(3) bits, the most possible with 3 judges
    assert scores["p0"] == pytest.approx(math.log2(3))
    # p3: a, a, b -> 0.918 bits
    assert scores["p3"] == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    assert [s.score for s in chosen] == sorted(scores.values(), reverse=True)
    assert "a x1, b x1, tie x1" in chosen[0].reason


def test_annotators_that_abstain_do_not_vote():
    abstains_on_short = RuleAnnotator("picky", lambda text: None if len(text) < 3 else len(text))
    chosen = select_pairs(PAIRS, "disagreement", len(PAIRS),
                          annotators=[abstains_on_short, RuleAnnotator("shorter", lambda text: -len(text))])
    by_prompt = {s.pair.prompt: s for s in chosen}
    assert by_prompt["p4"].score == 0.0 and "1 of 2 annotator(s)" in by_prompt["p4"].reason  # "ok" -> abstains
    assert by_prompt["p0"].score == pytest.approx(1.0)  # a vs b: one bit


def test_budget_larger_than_the_pairs_returns_all_of_them():
    assert len(select_pairs(PAIRS, "random", 100)) == len(PAIRS)
    assert len(select_pairs(PAIRS, "uncertainty", 100, scorers=[ConstantScorer()])) == len(PAIRS)
    assert select_pairs([], "random", 5) == []


def test_equal_scores_are_ordered_by_the_seed():
    orders = {tuple(prompts_of(select_pairs(PAIRS, "uncertainty", 9, seed=seed, scorers=[ConstantScorer()])))
              for seed in range(5)}
    assert len(orders) > 1 and all(sorted(order) == sorted(p.prompt for p in PAIRS) for order in orders)
    assert prompts_of(select_pairs(PAIRS, "uncertainty", 9, seed=3, scorers=[ConstantScorer()])) == prompts_of(
        select_pairs(PAIRS, "uncertainty", 9, seed=3, scorers=[ConstantScorer()]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"strategy": "greedy", "budget": 2}, "unknown selection strategy 'greedy'; choose one of: random, uncertainty"),
    ({"strategy": "random", "budget": 0}, "budget must be at least 1"),
    ({"strategy": "random", "budget": -3}, "budget must be at least 1"),
    ({"strategy": "random", "budget": 2.5}, "whole number"),
    ({"strategy": "random", "budget": True}, "whole number"),
    ({"strategy": "uncertainty", "budget": 2}, "needs at least one reward scorer"),
    ({"strategy": "uncertainty", "budget": 2, "scorers": [LengthScorer()],
      "annotators": [RuleAnnotator("x", len)]}, "annotators give labels, not margins"),
    ({"strategy": "disagreement", "budget": 2, "scorers": [LengthScorer()]}, "got 1 scorer"),
    ({"strategy": "disagreement", "budget": 2, "annotators": [RuleAnnotator("x", len)]}, "got 1 annotator"),
    ({"strategy": "disagreement", "budget": 2}, "needs at least 2 reward scorers or at least 2 annotators"),
    ({"strategy": "disagreement", "budget": 2, "scorers": [LengthScorer(), ConstantScorer()],
      "annotators": [RuleAnnotator("x", len), RuleAnnotator("y", len)]}, "not both"),
    ({"strategy": "uncertainty", "budget": 2, "scorers": [BrokenScorer([1.0])]}, "returned 1 scores for 18"),
    ({"strategy": "uncertainty", "budget": 2, "scorers": [BrokenScorer([math.nan] * 18)]}, "finite numbers"),
    ({"strategy": "uncertainty", "budget": 2, "scorers": ["not a scorer"]}, "not a reward scorer"),
])
def test_bad_input_is_a_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select_pairs(PAIRS, **kwargs)


def test_a_diverse_batch_skips_near_duplicate_prompts_until_distinct_ones_run_out():
    template = "Write a short poem about the sea and the wind at night, in four lines, item {}."
    near = [Pair(template.format(i), "a" * 10, "b" * (10 + i)) for i in range(6)]  # one word differs: near-dups
    distinct = [Pair(f"Summarise {topic} in one sentence.", "a" * 10, "b" * 30)
                for topic in ("the news", "this recipe")]
    pool = near + distinct
    plain = select_pairs(pool, "uncertainty", 3, scorers=[LengthScorer()])
    assert [s.pair for s in plain] == near[:3]  # smallest margins: the templated prompts
    diverse = select_pairs(pool, "uncertainty", 3, scorers=[LengthScorer()], diverse=True)
    # One of the template, then the distinct ones (equal margins: the seed orders them).
    assert diverse[0].pair == near[0] and {id(s.pair) for s in diverse[1:]} == {id(p) for p in distinct}
    filled = select_pairs(pool, "uncertainty", 4, scorers=[LengthScorer()], diverse=True)
    assert filled[3].pair == near[1]  # too few distinct prompts: the best-ranked near-duplicate fills
    assert len(select_pairs(pool, "random", 8, diverse=True)) == 8
