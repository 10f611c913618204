"""DSPyInstructionTuner on a tiny local LM with the real IFEval metric: best instruction, applied, saved, loaded."""

from __future__ import annotations

import dspy
import pytest

from policy.instructions.dspy_tuner import DSPyInstructionTuner
from reward.dspy_metrics import InstructionFollowingMetric
from rlhfkit.lm.plain_adapter import PlainAdapter
from tests.policy_support import tiny_dspy_lm

pytestmark = pytest.mark.usefixtures("one_thread")


class Respond(dspy.Signature):
    """Answer the request."""

    prompt: str = dspy.InputField()
    response: str = dspy.OutputField()


def trainset() -> list[dspy.Example]:
    rows = [("Name two fruits. Do not use any commas.", ["punctuation:no_comma"], [{}]),
            ("Greet me in lowercase letters only.", ["change_case:english_lowercase"], [{}]),
            ("Say hi and end with 'bye now'.", ["startend:end_checker"], [{"end_phrase": "bye now"}])]
    return [dspy.Example(prompt=p, instruction_id_list=ids, kwargs=kw).with_inputs("prompt") for p, ids, kw in rows]


@pytest.fixture(scope="module")
def lm():
    return tiny_dspy_lm(8, seed=5, name="tiny-tuner")


def test_tuner_returns_the_best_scoring_instruction_applied_to_the_module(lm, tmp_path):
    tuner = DSPyInstructionTuner(InstructionFollowingMetric(), lm=lm, adapter=PlainAdapter(), rounds=1)
    result = tuner.tune_module_instruction(dspy.Predict, Respond, trainset())
    assert "Answer the request." in result.scores  # the starting instruction was scored too
    assert result.score == max(result.scores.values()) >= result.scores["Answer the request."]
    assert result.module.signature.instructions == result.instruction
    assert result.lm_calls == 3 * len(result.scores)
    with dspy.context(lm=lm, adapter=PlainAdapter()):
        rescored = dspy.Evaluate(devset=trainset(), metric=InstructionFollowingMetric(), num_threads=1,
                                 display_progress=False)(result.module).score / 100
    assert rescored == pytest.approx(result.score)  # the module carries the instruction it was scored with
    result.module.save(tmp_path / "module.json")
    loaded = dspy.Predict(Respond)
    loaded.load(tmp_path / "module.json")
    assert loaded.signature.instructions == result.instruction


def test_budget_and_empty_trainset(lm):
    tuner = DSPyInstructionTuner(lm=lm, adapter=PlainAdapter(), rounds=3, budget=7)
    result = tuner.tune_module_instruction(dspy.Predict, Respond, trainset())
    assert result.lm_calls <= 7 and len(result.scores) == 2
    with pytest.raises(ValueError, match="does not cover"):
        DSPyInstructionTuner(lm=lm, adapter=PlainAdapter(), budget=2).tune_module_instruction(
            dspy.Predict, Respond, trainset())
    with pytest.raises(ValueError, match="empty"):
        DSPyInstructionTuner(lm=lm).tune_module_instruction(dspy.Predict, Respond, [])
