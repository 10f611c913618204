"""LLM-judge annotator: a DSPy module that compares two responses, over any configured LM.

- `JudgeModule` (one `forward(prompt, response_a, response_b) -> Prediction(preference=...)`) works with any DSPy LM:
  a LiteLLM model string for users with an API, or a local model through rlhfkit's engine (the bundled SmolLM2
  offline). Two short demos make small models answer in the expected form.
- `JudgeAnnotator` asks twice, with the responses in both orders, and keeps a verdict only when the two agree:
  LLM judges favour one position, and a verdict that flips with the order is no judgment. Unparseable answers
  count as failures (None), never a crash.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dspy

from preference.pairs import Pair
from preference.schema import Label, PreferenceRecord
from reward.text import flatten
from rlhfkit.lm.local_lm import lm_and_adapter

log = logging.getLogger(__name__)

Verdict = Literal["A", "B", "tie", "both_bad"]
TO_LABEL = {"A": Label.A, "B": Label.B, "tie": Label.TIE, "both_bad": Label.BOTH_BAD}


class PairwiseJudgment(dspy.Signature):
    """Two assistants answered the same prompt. Decide which response follows the prompt's instructions better:
    A, B, tie (equally good) or both_bad (neither is acceptable)."""

    prompt: str = dspy.InputField()
    response_a: str = dspy.InputField()
    response_b: str = dspy.InputField()
    preference: Verdict = dspy.OutputField()


def _demo(prompt: str, a: str, b: str, preference: str) -> dspy.Example:
    return dspy.Example(prompt=prompt, response_a=a, response_b=b, preference=preference).with_inputs(
        "prompt", "response_a", "response_b")


DEMOS = [
    _demo("Reply in French: say hello.", "Hello!", "Bonjour !", "B"),
    _demo("Use no commas: name two fruits.", "Apples and pears.", "Apples, pears.", "A"),
]


class JudgeModule(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.judge = dspy.Predict(PairwiseJudgment)
        self.judge.demos = list(DEMOS)

    def forward(self, prompt: str, response_a: str, response_b: str) -> dspy.Prediction:
        return self.judge(prompt=prompt, response_a=response_a, response_b=response_b)


def judge_lm(spec: str | Any) -> tuple[Any, Any]:
    """(dspy LM, adapter) for `spec` (see `rlhfkit.lm.local_lm.lm_and_adapter`); a verdict needs 16 tokens."""
    return lm_and_adapter(spec, max_new_tokens=16)


class JudgeAnnotator:
    """Annotator over a judge module; `name` defaults to "judge:<lm>"."""

    def __init__(self, lm: str | Any = "smollm2-135m-instruct", *, module: dspy.Module | None = None,
                 name: str | None = None, debias: bool = True):
        self.lm, self.adapter = judge_lm(lm)  # (None, None) when a module brings its own judging
        self.module = module or JudgeModule()
        label = lm if isinstance(lm, str) else getattr(lm, "model", "custom")
        self.name = name or f"judge:{label}"
        self.debias = debias
        self.last_skipped: Counter[str] = Counter()

    def _ask(self, prompt: str, first: str, second: str) -> str | None:
        try:
            with dspy.context(**{k: v for k, v in (("lm", self.lm), ("adapter", self.adapter)) if v is not None}):
                verdict = self.module(prompt=prompt, response_a=first, response_b=second).preference
        except Exception as exc:  # an LM that answers garbage or fails is a failed judgment, not a crashed run
            self.last_skipped[f"unparseable or failed ({type(exc).__name__})"] += 1
            return None
        if verdict not in TO_LABEL:
            self.last_skipped["answer not one of A, B, tie, both_bad"] += 1
            return None
        return verdict

    def judge(self, pair: Pair) -> PreferenceRecord | None:
        prompt = flatten(pair.prompt)
        forward = self._ask(prompt, pair.response_a, pair.response_b)
        if forward is None:
            return None
        label = TO_LABEL[forward]
        metadata: dict[str, Any] = {**pair.metadata, "judge": {"forward": forward}}
        if self.debias:
            backward = self._ask(prompt, pair.response_b, pair.response_a)
            if backward is None:
                return None
            metadata["judge"]["swapped"] = backward
            if TO_LABEL[backward].swapped() != label:
                self.last_skipped["verdict changed when the responses swapped places"] += 1
                return None
        return PreferenceRecord(prompt=pair.prompt, response_a=pair.response_a, response_b=pair.response_b,
                                label=label, annotator=self.name, source=self.name, metadata=metadata)

    def annotate(self, pairs: Sequence[Pair], *, on_pair: Callable[[], None] | None = None
                 ) -> list[PreferenceRecord | None]:
        self.last_skipped = Counter()
        results = []
        for pair in pairs:
            results.append(self.judge(pair))
            if on_pair:
                on_pair()
        for reason, count in self.last_skipped.items():
            log.info("%s: %d pair(s) not judged: %s", self.name, count, reason)
        return results
