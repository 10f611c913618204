"""InstructionTemplateGenerator: LLM-written templates with checks and a deterministic fallback; refinement."""

from __future__ import annotations

import dspy
import pytest

from policy.instructions.templates import (
    FORMATS,
    InstructionTemplate,
    InstructionTemplateGenerator,
    clean_instruction,
    fallback_template,
    rejection,
)
from rlhfkit.lm.local_lm import TransformersEngine, local_lm
from rlhfkit.lm.plain_adapter import PlainAdapter
from tests.policy_support import tiny_dspy_lm

pytestmark = pytest.mark.usefixtures("one_thread")


def test_clean_instruction_accepts_instructions_and_rejects_chatter():
    assert clean_instruction("Instruction: summarise the text in two sentences", "t") == \
        "Summarise the text in two sentences."
    assert clean_instruction('"List three causes of rain."', "t") == "List three causes of rain."
    assert clean_instruction("ok", "t") is None  # too short to instruct
    assert clean_instruction("Task: rain\nOutput format: any", "t") is None  # echoed the prompt
    assert clean_instruction("123 456 789 000", "t") is None  # no words
    assert clean_instruction(None, "t") is None
    assert "echoed the prompt's fields" in rejection("Task: rain\nOutput format: any", "t")[1]
    assert "has 1 words" in rejection("ok", "t")[1] and rejection("List three causes of rain.", "t")[1] == ""


def test_without_an_lm_the_fallback_follows_the_practices():
    template = InstructionTemplateGenerator().generate_template("summarise the article", "list",
                                                                constraints=["mention the date"])
    assert template.source == "fallback" and "no LM configured" in template.reason
    assert template.text.startswith("Summarise the article.")
    assert FORMATS["list"] in template.text and "Mention the date." in template.text
    assert template.render("TEXT").endswith("TEXT") and "{input}" not in template.instruction
    with pytest.raises(ValueError, match="non-empty"):
        InstructionTemplateGenerator().generate_template("  ")


def test_an_lm_that_fails_falls_back_instead_of_crashing():
    broken = dspy.LM("local/missing", engine=TransformersEngine("no-such-model-anywhere"), cache=False)
    template = InstructionTemplateGenerator(broken, PlainAdapter()).generate_template("translate to French")
    assert template.source == "fallback" and template.text.startswith("Translate to French.")
    assert template.reason.startswith("the LM failed:")


def test_a_local_model_writes_a_usable_template():
    lm = tiny_dspy_lm(24)
    template = InstructionTemplateGenerator(lm, PlainAdapter()).generate_template("name a fruit", "one_word")
    assert template.source in ("lm", "fallback") and template.text.endswith("{input}")
    assert FORMATS["one_word"] in template.text  # the format is stated whichever source wrote the rest
    assert (template.source == "fallback") == bool(template.reason)  # a fallback always says why


def test_refine_adds_one_constraint_per_kind_of_failure():
    template = InstructionTemplate(fallback_template("describe rain"), "fallback")
    refined = InstructionTemplateGenerator.refine(template, ["punctuation:no_comma", "punctuation:no_comma",
                                                             "unknown:thing"])
    assert refined.text.count("Do not use any commas.") == 1 and "Follow every formatting" in refined.text
    assert refined.text.endswith("{input}")
    assert InstructionTemplateGenerator.refine(refined, ["punctuation:no_comma"]).text == refined.text


@pytest.mark.integration
def test_bundled_smollm2_writes_a_template_offline():
    lm = local_lm("smollm2-135m-instruct", max_new_tokens=48, cache=False)
    template = InstructionTemplateGenerator(lm, PlainAdapter()).generate_template("explain why the sky is blue",
                                                                                  "paragraph")
    assert template.text.endswith("{input}") and FORMATS["paragraph"] in template.text
    assert len(template.instruction.split()) >= 4
    assert (template.source == "fallback") == bool(template.reason)
