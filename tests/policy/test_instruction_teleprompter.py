"""InstructionEvolution, rlhfkit's DSPy optimizer: compile on one- and two-predictor programs with the real IFEval
verifier metric, significance-gated replacement, budget, resume and faults."""

from __future__ import annotations

import json

import dspy
import pytest

from policy.instructions.fitness import example_of
from policy.instructions.teleprompter import (
    InstructionEvolution,
    InstructionEvolutionConfig,
    instructions_of,
    paired_gain,
)
from policy.prompts import builtin_prompts
from reward.dspy_metrics import InstructionFollowingMetric
from rlhfkit.core.errors import InputError
from rlhfkit.lm.plain_adapter import PlainAdapter
from tests.policy_support import tiny_dspy_lm

pytestmark = pytest.mark.usefixtures("one_thread")
COMMA_START = "Answer the request, please. Be brief."


class Echo(dspy.Module):
    """A deterministic program: its answer is its own instruction, so an instruction that breaks an IFEval
    constraint scores 0 and one that keeps it scores 1. Prompts starting "B" are answered by `second`, the rest by
    `first`."""

    def __init__(self, first: str, second: str | None = None):
        super().__init__()
        self.first = dspy.Predict(dspy.Signature("prompt -> response", first))
        if second is not None:
            self.second = dspy.Predict(dspy.Signature("prompt -> response", second))

    def forward(self, prompt: str) -> dspy.Prediction:
        predictor = self.second if prompt.startswith("B") and hasattr(self, "second") else self.first
        return dspy.Prediction(response=predictor.signature.instructions)


def no_comma_examples(n: int, prefixes: str = "A") -> list[dspy.Example]:
    return [dspy.Example(prompt=f"{prefixes[i % len(prefixes)]}: write line {i} without commas.",
                         instruction_id_list=["punctuation:no_comma"], kwargs=[{}]).with_inputs("prompt")
            for i in range(n)]


def test_a_significant_gain_replaces_the_instruction_and_the_program_carries_it(tmp_path):
    trainset = no_comma_examples(20)
    optimizer = InstructionEvolution(InstructionFollowingMetric(), InstructionEvolutionConfig(rounds=2, seed=1))
    tuned = optimizer.compile(Echo(COMMA_START), trainset=trainset)
    report = optimizer.report
    assert report["start_train_score"] == 0.0 and report["train_score"] == 1.0
    accepted = [h for h in report["history"] if h["accepted"]]
    assert accepted and "," not in accepted[0]["accepted"] and accepted[0]["gain_ci"][0] > 0
    assert instructions_of(tuned) == report["instructions"] and "," not in tuned.first.signature.instructions
    assert instructions_of(Echo(COMMA_START)) == {"first": COMMA_START}  # the student itself is untouched
    rescored = dspy.Evaluate(devset=trainset, metric=InstructionFollowingMetric(), display_progress=False)(tuned)
    assert rescored.score == 100.0
    tuned.save(tmp_path / "program.json")  # the tuned program saves and loads as any DSPy program
    loaded = Echo(COMMA_START)
    loaded.load(tmp_path / "program.json")
    assert instructions_of(loaded) == report["instructions"]


def test_every_predictor_of_a_two_predictor_program_is_tuned():
    trainset = no_comma_examples(24, prefixes="AB")
    optimizer = InstructionEvolution(InstructionFollowingMetric(), InstructionEvolutionConfig(rounds=3, seed=0))
    tuned = optimizer.compile(Echo(COMMA_START, "Check it, then answer. Keep it short."), trainset=trainset)
    history = optimizer.report["history"]
    assert {h["predictor"] for h in history} == {"first", "second"}
    assert {h["predictor"] for h in history if h["accepted"]} == {"first", "second"}
    assert all("," not in text for text in instructions_of(tuned).values())
    assert optimizer.report["train_score"] == 1.0


def test_no_gain_no_change_and_a_tie_keeps_the_start():
    """Every candidate scores what the start scores (no comma anywhere): nothing is significant, nothing changes."""
    optimizer = InstructionEvolution(InstructionFollowingMetric(), InstructionEvolutionConfig(rounds=2))
    tuned = optimizer.compile(Echo("Answer the request. Be brief."), trainset=no_comma_examples(10),
                              valset=no_comma_examples(6))
    assert instructions_of(tuned) == {"first": "Answer the request. Be brief."}
    assert all(h["accepted"] is None for h in optimizer.report["history"])


def test_a_valset_that_disagrees_sends_back_the_start():
    """The trainset rewards dropping the comma, the valset's constraint rewards keeping it: the start returns."""
    valset = [dspy.Example(prompt=f"A {i}", instruction_id_list=["detectable_content:number_placeholders"],
                           kwargs=[{"num_placeholders": 1}]).with_inputs("prompt") for i in range(6)]
    start = "Answer the request, please [with care]. Be brief."
    optimizer = InstructionEvolution(InstructionFollowingMetric(), InstructionEvolutionConfig(rounds=2, seed=1))
    tuned = optimizer.compile(Echo(start), trainset=no_comma_examples(12), valset=valset)
    report = optimizer.report
    assert any(h["accepted"] for h in report["history"])
    assert report["confirmed"] is False and report["val_gain"] < 0
    assert instructions_of(tuned) == {"first": start}


def test_paired_gain_interval():
    gain, low, high = paired_gain([1, 1, 1, 0] * 5, [0, 1, 1, 0] * 5, level=0.95, n_bootstrap=500, seed=0)
    assert gain == pytest.approx(0.25) and 0 < low < gain < high
    gain, low, high = paired_gain([1, 0] * 5, [0, 1] * 5, level=0.95, n_bootstrap=500, seed=0)
    assert gain == 0 and low < 0 < high


class TwoStep(dspy.Module):
    """A real two-predictor program: draft an answer, then rewrite it."""

    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict(dspy.Signature("prompt -> draft", "Draft an answer to the request."))
        self.rewrite = dspy.Predict(dspy.Signature("prompt, draft -> response", "Rewrite the draft as the answer."))

    def forward(self, prompt: str) -> dspy.Prediction:
        return self.rewrite(prompt=prompt, draft=self.draft(prompt=prompt).draft)


def ifeval_examples(n: int) -> list[dspy.Example]:
    return [dspy.Example(**example_of(item)).with_inputs("prompt") for item in builtin_prompts(n)]


@pytest.fixture(scope="module")
def tiny_lm():
    return tiny_dspy_lm(8, seed=5, name="tiny-teleprompter")


@pytest.mark.parametrize("program", [lambda: dspy.Predict(dspy.Signature("prompt -> response",
                                                                          "Answer the request.")), TwoStep],
                         ids=["one-predictor", "two-predictor"])
def test_compile_on_a_tiny_model_scores_at_least_the_start(tiny_lm, program):
    trainset = ifeval_examples(8)
    metric = InstructionFollowingMetric()
    optimizer = InstructionEvolution(metric, InstructionEvolutionConfig(rounds=1, candidates=2, budget=200),
                                     proposer_lm=tiny_lm, proposer_adapter=PlainAdapter())
    with dspy.context(lm=tiny_lm, adapter=PlainAdapter()):
        student = program()
        tuned = optimizer.compile(student, trainset=trainset)
        evaluate = dspy.Evaluate(devset=trainset, metric=metric, display_progress=False)
        start_score, tuned_score = evaluate(student).score / 100, evaluate(tuned).score / 100
    report = optimizer.report
    assert {h["predictor"] for h in report["history"]} == set(instructions_of(student))
    assert tuned_score >= start_score
    assert tuned_score == pytest.approx(report["train_score"])  # the returned program is the one scored
    assert start_score == pytest.approx(report["start_train_score"])
    assert report["calls"] <= 200 and report["calls"] % len(trainset) == 0  # whole passes; nothing answered twice


class InterruptedOnce(InstructionEvolution):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.proposals = 0

    def propose(self, *args, **kwargs):
        self.proposals += 1
        if self.proposals == 2:
            raise KeyboardInterrupt
        return super().propose(*args, **kwargs)


def test_an_interrupted_search_resumes_and_ends_where_an_uninterrupted_one_does(tmp_path):
    trainset = no_comma_examples(16, prefixes="AB")
    start = Echo(COMMA_START, "Check it, then answer. Keep it short.")
    settings = {"rounds": 2, "candidates": 3, "seed": 4}
    whole = InstructionEvolution(InstructionFollowingMetric(), InstructionEvolutionConfig(**settings))
    expected = instructions_of(whole.compile(start, trainset=trainset))
    state = tmp_path / "search.json"
    config = InstructionEvolutionConfig(**settings, state_path=str(state))
    with pytest.raises(KeyboardInterrupt):
        InterruptedOnce(InstructionFollowingMetric(), config).compile(start, trainset=trainset)
    assert json.loads(state.read_text())["step"] == 0  # the first step was saved before the interruption
    resumed = InstructionEvolution(InstructionFollowingMetric(), InstructionEvolutionConfig(**settings,
                                                                                            state_path=str(state)))
    assert instructions_of(resumed.compile(start, trainset=trainset)) == expected
    assert resumed.report["history"] == whole.report["history"] and resumed.report["calls"] == whole.report["calls"]
    other = InstructionEvolution(InstructionFollowingMetric(), InstructionEvolutionConfig(rounds=1,
                                                                                          state_path=str(state)))
    with pytest.raises(InputError, match="another program, data or settings"):
        other.compile(start, trainset=trainset)


def test_bad_inputs_and_faults():
    metric = InstructionFollowingMetric()
    with pytest.raises(InputError, match="trainset is empty"):
        InstructionEvolution(metric).compile(Echo(COMMA_START), trainset=[])
    with pytest.raises(InputError, match="valset is empty"):
        InstructionEvolution(metric).compile(Echo(COMMA_START), trainset=no_comma_examples(2), valset=[])
    with pytest.raises(InputError, match=r"budget \(5 program calls\) does not cover"):
        InstructionEvolution(metric, InstructionEvolutionConfig(budget=5)).compile(
            Echo(COMMA_START), trainset=no_comma_examples(8))
    with pytest.raises(InputError, match="race_fraction"):
        InstructionEvolutionConfig(race_fraction=0).validate()

    budgeted = InstructionEvolution(metric, InstructionEvolutionConfig(rounds=5, budget=30))
    budgeted.compile(Echo(COMMA_START), trainset=no_comma_examples(10))
    assert budgeted.report["calls"] <= 30 and "stopped" in budgeted.report["history"][-1]

    def raising(example, prediction, trace=None):
        if "3" in example.prompt:
            raise RuntimeError("metric bug")
        return metric(example, prediction, trace)

    survived = InstructionEvolution(raising, InstructionEvolutionConfig(rounds=2, seed=1))
    tuned = survived.compile(Echo(COMMA_START), trainset=no_comma_examples(20))
    assert survived.report["train_score"] == pytest.approx(18 / 20)  # 2 prompts name a 3: scored 0, search went on
    assert survived.report["errors"]["metric"] > 0 and survived.report["errors"]["program"] == 0
    assert "," not in tuned.first.signature.instructions

    class Unparseable(dspy.Module):
        def __init__(self):
            super().__init__()
            self.first = dspy.Predict("prompt -> response")

        def forward(self, prompt):
            raise dspy.utils.exceptions.AdapterParseError("ChatAdapter", dspy.Signature("prompt -> response"),
                                                          "garbage")

    failing = InstructionEvolution(metric, InstructionEvolutionConfig(rounds=1))
    failing.compile(Unparseable(), trainset=no_comma_examples(4))
    assert failing.report["train_score"] == 0.0 and failing.report["errors"]["program"] >= 4
