"""The LLM-judge annotator: a DSPy module over a real local model, position-debiased, never crashing on garbage."""

from __future__ import annotations

import dspy
import pytest

from annotation.judge import JudgeAnnotator, JudgeModule
from preference.pairs import Pair
from preference.schema import Label
from rlhfkit.lm.local_lm import TransformersEngine
from rlhfkit.lm.plain_adapter import PlainAdapter
from tests.tiny_models import tiny_causal_lm

PAIRS = [Pair("Answer in lowercase: what is the capital of France?", "paris is the capital.", "PARIS IS THE CAPITAL."),
         Pair("Use no commas: list two colours.", "Red, blue.", "Red and blue.")]


class PrefersLowercase(dspy.Module):
    """A programmatic judge module (rule-based, no LM): lowercase answers win."""

    def forward(self, prompt, response_a, response_b):
        a, b = response_a == response_a.lower(), response_b == response_b.lower()
        return dspy.Prediction(preference="tie" if a == b else "A" if a else "B")


class AlwaysA(dspy.Module):
    def forward(self, prompt, response_a, response_b):
        return dspy.Prediction(preference="A")


def test_position_consistent_verdicts_are_kept_and_oriented():
    judge = JudgeAnnotator(None, module=PrefersLowercase(), name="judge:rule")
    first, second = judge.annotate(PAIRS)
    assert first.label == Label.A and first.annotator == "judge:rule"
    assert first.metadata["judge"] == {"forward": "A", "swapped": "B"}
    assert second.label == Label.TIE


def test_a_judge_that_always_picks_the_first_position_gives_no_verdicts():
    judge = JudgeAnnotator(None, module=AlwaysA())
    assert judge.annotate(PAIRS) == [None, None]
    assert judge.last_skipped["verdict changed when the responses swapped places"] == 2
    assert JudgeAnnotator(None, module=AlwaysA(), debias=False).annotate(PAIRS)[0].label == Label.A


def test_an_lm_that_answers_garbage_fails_each_pair_without_crashing():
    model, tokenizer = tiny_causal_lm()  # random weights on the real SmolLM2 tokenizer: its answers are noise
    engine = TransformersEngine("tiny", max_new_tokens=8)
    engine._loaded = (model, tokenizer)
    lm = dspy.LM("local/tiny", engine=engine, cache=False, max_tokens=8)
    judge = JudgeAnnotator(lm)
    judge.adapter = PlainAdapter()
    results = judge.annotate(PAIRS)
    assert len(results) == 2 and sum(judge.last_skipped.values()) == sum(r is None for r in results)
    assert all(r is None or r.label in Label for r in results)


@pytest.mark.integration
def test_bundled_smollm2_judges_through_dspy_offline():
    judge = JudgeAnnotator("smollm2-135m-instruct")
    prediction = JudgeModule()
    with dspy.context(lm=judge.lm, adapter=judge.adapter):
        verdict = prediction(prompt=PAIRS[0].prompt, response_a=PAIRS[0].response_a,
                             response_b=PAIRS[0].response_b).preference
    assert verdict in ("A", "B", "tie", "both_bad")  # the adapter gets a valid answer out of a 135M model
    results = judge.annotate(PAIRS)
    assert len(results) == 2 and all(r is None or r.annotator == "judge:smollm2-135m-instruct" for r in results)
    assert sum(r is None for r in results) == sum(judge.last_skipped.values())
