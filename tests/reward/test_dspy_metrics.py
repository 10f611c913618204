"""Reward models and the IFEval verifier as DSPy metrics: dspy.Evaluate, GEPA-style feedback, a RewardScore module."""

from __future__ import annotations

import math

import dspy
import pytest

from reward.dspy_metrics import InstructionFollowingMetric, RewardScore
from reward.model import RewardModel
from rlhfkit.lm.plain_adapter import PlainAdapter
from tests.policy_support import tiny_dspy_lm, tiny_reward_model

pytestmark = pytest.mark.usefixtures("one_thread")

NO_COMMA = {"prompt": "Name two fruits. Do not use any commas in your response.",
            "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
LOWER_AND_END = {"prompt": "Say hi in lowercase and end with 'bye now'.",
                 "instruction_id_list": ["change_case:english_lowercase", "startend:end_checker"],
                 "kwargs": [{}, {"end_phrase": "bye now"}]}


def example(fields: dict) -> dspy.Example:
    return dspy.Example(**fields).with_inputs("prompt")


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> RewardModel:
    return tiny_reward_model(tmp_path_factory.mktemp("rm") / "rm", seed=4, max_length=64)


def test_verifier_metric_scores_the_share_of_instructions_followed():
    metric = InstructionFollowingMetric()
    assert metric(example(NO_COMMA), dspy.Prediction(response="apples and pears")) == 1.0
    assert metric(example(NO_COMMA), dspy.Prediction(response="apples, pears")) == 0.0
    assert metric(example(LOWER_AND_END), dspy.Prediction(response="hi there bye now")) == 1.0
    assert metric(example(LOWER_AND_END), dspy.Prediction(response="Hi there bye now")) == 0.5
    assert metric(example(NO_COMMA), dspy.Prediction(response="  ")) == 0.0
    assert metric(example(NO_COMMA), None) == 0.0


def test_gepa_gets_feedback_naming_the_failed_instruction():
    metric = InstructionFollowingMetric(verifier="strict")
    result = metric(example(LOWER_AND_END), dspy.Prediction(response="Hi there bye now"), None, "respond", None)
    assert isinstance(result, dspy.Prediction) and result.score == 0.5
    assert "failed: change_case:english_lowercase" in result.feedback
    empty = InstructionFollowingMetric(feedback=True)(example(NO_COMMA), dspy.Prediction(response=""))
    assert empty.score == 0.0 and "no answer" in empty.feedback


def test_reward_and_verifier_combine_with_weights(scorer):
    pred = dspy.Prediction(response="apples and pears")
    reward = scorer.score([NO_COMMA["prompt"]], ["apples and pears"])[0]
    squashed = 1 / (1 + math.exp(-reward))
    both = InstructionFollowingMetric(reward_model=scorer, verifier_weight=3.0, reward_weight=1.0)
    assert both(example(NO_COMMA), pred) == pytest.approx((3.0 * 1.0 + squashed) / 4)
    only_reward = InstructionFollowingMetric(verifier=None, reward_model=scorer)
    assert only_reward(example(NO_COMMA), pred) == pytest.approx(squashed)
    assert RewardScore(scorer)(prompt=NO_COMMA["prompt"], response="apples and pears").score == pytest.approx(reward)
    with pytest.raises(ValueError, match="verifier, a reward model"):
        InstructionFollowingMetric(verifier=None)


class Respond(dspy.Signature):
    """Answer the request."""

    prompt: str = dspy.InputField()
    response: str = dspy.OutputField()


def test_dspy_evaluate_runs_with_the_metric_on_a_local_model():
    lm = tiny_dspy_lm(6)
    devset = [example(NO_COMMA), example(LOWER_AND_END)]
    with dspy.context(lm=lm, adapter=PlainAdapter()):
        result = dspy.Evaluate(devset=devset, metric=InstructionFollowingMetric(), num_threads=1,
                               display_progress=False)(dspy.Predict(Respond))
    assert 0.0 <= result.score <= 100.0 and len(result.results) == 2
    for gold, pred, score in result.results:
        assert score == InstructionFollowingMetric()(gold, pred)  # Evaluate used our metric on each answer
