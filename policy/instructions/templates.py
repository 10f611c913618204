"""`InstructionTemplateGenerator.generate_template(task)`: an LLM writes an instruction template for a task.

A template is an instruction with an `{input}` slot for the task's input. Generation follows three practices:
- **clarity**: one explicit imperative sentence saying what to do;
- **format specification**: when the task names an output format (JSON, a list, one word, ...), the template says
  exactly how the answer must look;
- **iterative refinement**: start simple; `refine(template, failures)` adds a constraint for each way answers
  failed (e.g. the IFEval instructions they broke), which the evolutionary optimizer uses as an operator.

The LM call goes through a DSPy module (`WriteInstruction`), so any DSPy LM works: the bundled SmolLM2 offline (with
rlhfkit's PlainAdapter) or any LiteLLM model. Small models often answer with chatter, so the answer is checked
(non-empty, a sentence of sensible length, no echo of the prompt's field labels) and a **deterministic fallback**
built from the task and the practices above takes its place when the check fails. `source` says which one was used.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import dspy

from rlhfkit.core.errors import InputError

log = logging.getLogger(__name__)

# Output formats a task may name, and the sentence that specifies each.
FORMATS: dict[str, str] = {
    "json": "Answer with a single valid JSON object and nothing else.",
    "list": "Answer as a markdown list, one item per line starting with '* '.",
    "one_word": "Answer with one word only.",
    "number": "Answer with the number only.",
    "sentence": "Answer in one complete sentence.",
    "paragraph": "Answer in one short paragraph.",
}

# What to add when answers broke an IFEval instruction: the constraint, said plainly.
CONSTRAINT_TEXT: dict[str, str] = {
    "punctuation:no_comma": "Do not use any commas.",
    "change_case:english_lowercase": "Write everything in lowercase letters.",
    "change_case:english_capital": "Write everything in capital letters.",
    "startend:quotation": "Wrap the whole answer in double quotation marks.",
    "startend:end_checker": "End with exactly the phrase the request asks for, and nothing after it.",
    "detectable_format:title": "Start with a title wrapped in double angular brackets, like <<title>>.",
    "detectable_format:number_bullet_lists": "Use exactly as many markdown bullet points ('* ') as requested.",
    "detectable_content:postscript": "End with a postscript that starts with the marker the request gives.",
    "length_constraints:number_words": "Keep to the number of words the request allows.",
    "length_constraints:number_sentences": "Keep to the number of sentences the request allows.",
    "length_constraints:number_paragraphs": "Use exactly the number of paragraphs requested, separated as asked.",
    "keywords:existence": "Use every keyword the request names.",
    "detectable_format:number_highlighted_sections": "Highlight as many sections with *asterisks* as requested.",
    "detectable_content:number_placeholders": "Include as many [placeholders] in square brackets as requested.",
    "detectable_format:multiple_sections": "Mark each section the request asks for with its marker and number, "
                                          "like SECTION 1.",
    "keywords:forbidden_words": "Never use the words the request forbids.",
    "detectable_format:json_format": "Answer with valid JSON only.",
    "language:response_language": "Answer in the language the request asks for.",
}
GENERIC_CONSTRAINT = "Follow every formatting and length instruction in the request exactly."
MIN_WORDS, MAX_WORDS = 4, 120


@dataclasses.dataclass(frozen=True)
class InstructionTemplate:
    text: str  # the instruction, with an `{input}` slot
    source: str  # "lm" or "fallback"
    reason: str = ""  # why the fallback was used: no LM, the LM failed, or why its answer was rejected

    @property
    def instruction(self) -> str:
        """The instruction without the input slot (what a system prompt or a DSPy signature takes)."""
        return self.text.replace("{input}", "").strip()

    def render(self, input_text: str) -> str:
        return self.text.replace("{input}", input_text)


class WriteInstruction(dspy.Signature):
    """Write one clear instruction that tells an assistant exactly how to do the task. Start with a verb, say what
    a good answer contains, and state the required output format. Do not answer the task yourself."""

    task: str = dspy.InputField(desc="the task to write an instruction for")
    output_format: str = dspy.InputField(desc="the required output format, or 'any'")
    instruction: str = dspy.OutputField(desc="the instruction, one to three sentences")


class InstructionWriter(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.write = dspy.Predict(WriteInstruction)

    def forward(self, task: str, output_format: str = "any") -> dspy.Prediction:
        return self.write(task=task, output_format=output_format)


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


def rejection(text: Any, task: str) -> tuple[str | None, str]:
    """(the LM's instruction cleaned, "") if it passes the checks (see module docstring), else (None, why not)."""
    if not isinstance(text, str):
        return None, "the LM gave no text"
    text = re.sub(r"^\s*(instruction|answer)\s*:\s*", "", text.strip(), flags=re.IGNORECASE)
    text = text.strip().strip('"').strip()
    shown = text if len(text) <= 80 else text[:77] + "..."
    if re.search(r"\b(task|output format)\s*:", text, flags=re.IGNORECASE):
        return None, f"the LM echoed the prompt's fields instead of writing an instruction: {shown!r}"
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or not re.search(r"[A-Za-z]", text):
        return None, (f"the LM's answer has {len(words)} words (an instruction has {MIN_WORDS} to {MAX_WORDS}, "
                      f"with letters): {shown!r}")
    return _sentence(text), ""


def clean_instruction(text: Any, task: str) -> str | None:
    """The LM's instruction if it passes the checks (see module docstring), else None."""
    return rejection(text, task)[0]


def fallback_template(task: str, output_format: str | None = None, constraints: Sequence[str] = ()) -> str:
    """The deterministic template: the task as an explicit instruction, then format and constraints, then input."""
    parts = [_sentence(task), "Be explicit and complete, and do only what is asked."]
    if output_format:
        parts.append(FORMATS.get(output_format, _sentence(f"Answer in this format: {output_format}")))
    parts += [_sentence(c) for c in constraints]
    return " ".join(parts) + "\n\n{input}"


class InstructionTemplateGenerator:
    """Writes instruction templates with an LM (any DSPy LM; None: the one configured with `dspy.configure`)."""

    def __init__(self, lm: Any = None, adapter: Any = None):
        self.lm, self.adapter = lm, adapter
        self.writer = InstructionWriter()

    def _ask(self, task: str, output_format: str | None) -> tuple[str | None, str]:
        settings = {key: value for key, value in (("lm", self.lm), ("adapter", self.adapter)) if value is not None}
        try:
            with dspy.context(**settings):
                return self.writer(task=task, output_format=output_format or "any").instruction, ""
        except Exception as exc:  # an LM that fails or answers garbage is a failed attempt, never a crash
            return None, f"the LM failed: {type(exc).__name__}: {str(exc)[:160]}"

    def generate_template(self, task: str, output_format: str | None = None, constraints: Sequence[str] = ()
                          ) -> InstructionTemplate:
        """An instruction template for `task` (`{input}` marks where the task's input goes); a fallback template
        says in `reason` why the LM's was not used."""
        if not isinstance(task, str) or not task.strip():
            raise InputError("the task must be a non-empty description")
        if not (self.lm or dspy.settings.lm):
            written, why = None, "no LM configured (give one, or dspy.configure(lm=...))"
        else:
            answer, why = self._ask(task, output_format)
            written, why = (None, why) if why else rejection(answer, task)
        if written is None:
            # Said where an LM was asked and not used; with no LM at all the fallback is the plan, not news.
            log.log(logging.INFO if self.lm or dspy.settings.lm else logging.DEBUG,
                    "instruction template: the deterministic fallback, because %s", why)
            return InstructionTemplate(fallback_template(task, output_format, constraints), "fallback", why)
        extras = []
        if output_format in FORMATS:  # a known format is always stated exactly, whatever the LM wrote
            extras.append(FORMATS[output_format])
        elif output_format and output_format.lower() not in written.lower():
            extras.append(_sentence(f"Answer in this format: {output_format}"))
        return InstructionTemplate(" ".join([written, *extras, *(_sentence(c) for c in constraints)]) + "\n\n{input}",
                                   "lm")

    @staticmethod
    def refine(template: InstructionTemplate, failed_instructions: Sequence[str]) -> InstructionTemplate:
        """Add one plain constraint per kind of failure (IFEval instruction ids), skipping ones already there."""
        has_slot = "{input}" in template.text
        body = template.text.split("{input}", 1)[0]
        added = []
        for failed in dict.fromkeys(failed_instructions):
            constraint = CONSTRAINT_TEXT.get(failed, GENERIC_CONSTRAINT)
            if constraint not in body and constraint not in added:
                added.append(constraint)
        text = " ".join([body.strip(), *added])
        return InstructionTemplate(text + ("\n\n{input}" if has_slot else ""), template.source)
