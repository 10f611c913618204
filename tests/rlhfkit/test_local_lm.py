"""Local transformers models as DSPy LMs (engine API) and the plain-text adapter for small models."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from rlhfkit.lm.local_lm import TransformersEngine
from rlhfkit.lm.plain_adapter import PlainAdapter
from tests.tiny_models import tiny_causal_lm


class Pick(dspy.Signature):
    """Pick one."""

    question: str = dspy.InputField()
    answer: Literal["yes", "no", "maybe"] = dspy.OutputField()


class Count(dspy.Signature):
    """Count."""

    text: str = dspy.InputField()
    n: int = dspy.OutputField()


class Two(dspy.Signature):
    """Two outputs."""

    text: str = dspy.InputField()
    a: str = dspy.OutputField()
    b: str = dspy.OutputField()


@pytest.fixture(scope="module")
def tiny_lm():
    model, tokenizer = tiny_causal_lm()
    engine = TransformersEngine("tiny", max_new_tokens=5)
    engine._loaded = (model, tokenizer)
    return dspy.LM("local/tiny", engine=engine, cache=False, max_tokens=5), engine


def test_the_engine_answers_dspy_calls_with_token_counts(tiny_lm):
    lm, engine = tiny_lm
    outputs = lm("hello")
    assert isinstance(outputs[0], str)
    response = lm.history[-1]["response"]
    assert response.usage.output_tokens <= 5 and response.usage.input_tokens > 3


def test_plain_adapter_reads_single_values():
    adapter = PlainAdapter()
    assert adapter.parse(Pick, "I think No, not really") == {"answer": "no"}
    assert adapter.parse(Pick, "maybe... or yes") == {"answer": "maybe"}  # the option named first wins
    assert adapter.parse(Count, "There are 12 words.") == {"n": 12}
    with pytest.raises(AdapterParseError):
        adapter.parse(Pick, "unsure")
    with pytest.raises(ValueError, match="one output field"):
        adapter.format(Two, [], {"text": "x"})


def test_plain_adapter_prompt_names_the_options_and_uses_demos():
    demo = {"question": "Is water wet?", "answer": "yes"}
    messages = PlainAdapter().format(Pick, [demo], {"question": "Is fire cold?"})
    assert "one of yes, no, maybe" in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "yes" and messages[-1]["content"].endswith("Answer:")


def test_a_model_retrained_in_the_same_folder_is_not_answered_from_the_old_cache(tmp_path):
    import os

    from rlhfkit.lm.local_lm import local_lm
    from tests.policy_support import tiny_policy

    folder = tiny_policy(tmp_path / "policy")
    before = local_lm(folder).model
    weights = next(Path(folder).glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # saved again later
    assert local_lm(folder).model != before  # DSPy's cache keys on this name
    assert local_lm("smollm2-135m-instruct").model == "local/smollm2-135m-instruct"
