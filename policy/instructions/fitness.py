"""How good is an instruction? Answer examples with it as the policy's system prompt and score the answers.

`FitnessEvaluator.evaluate(instruction, prompts)` answers the prompts not seen before with that instruction
(greedy, batched: `policy.generate.Answerer`), scores each answer with rlhfkit's instruction-following metric (IFEval
share, optionally plus a reward model), and caches the result per (instruction, prompt), so no instruction is ever
answered twice on one prompt. Every answered prompt is one policy call; with a `budget`, a call that would exceed
it raises `BudgetExhausted` before any work. The cache is JSON-serialisable for resumable searches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import dspy

from policy.prompts import PromptItem
from policy.rewards import user_prompt
from reward.dspy_metrics import InstructionFollowingMetric
from reward.ifeval import VerificationError, verify_response
from rlhfkit.core.errors import InputError


class BudgetExhausted(RuntimeError):
    """The policy-call budget would be exceeded."""


@dataclasses.dataclass
class Evaluation:
    score: float  # the metric, in [0, 1]
    failed: list[str]  # IFEval instruction ids the answer broke
    answer: str


def example_of(item: PromptItem) -> dict[str, Any]:
    """The fields the metric reads, as a plain mapping."""
    return {"prompt": user_prompt(item.prompt), **{k: item.metadata[k] for k in ("instruction_id_list", "kwargs")
                                                   if k in item.metadata}}


class FitnessEvaluator:
    def __init__(self, answerer: Any, metric: InstructionFollowingMetric | None = None, budget: int | None = None):
        """`answerer`: anything with `answer(system, prompts) -> list[str]` and a `calls` count
        (`policy.generate.Answerer`)."""
        if budget is not None and budget < 1:
            raise InputError("the budget must be at least one policy call")
        self.answerer = answerer
        self.metric = metric or InstructionFollowingMetric()
        self.budget = budget
        self.cache: dict[tuple[str, str], Evaluation] = {}
        self.spent = 0  # policy calls made through this evaluator (resumed runs include earlier ones)
        self.on_calls: Callable[[int], None] | None = None  # told how many calls each evaluation made (progress)

    def left(self) -> int | None:
        return None if self.budget is None else self.budget - self.spent

    def evaluate(self, instruction: str, prompts: Sequence[PromptItem]) -> list[Evaluation]:
        missing = list({item.key: item for item in prompts if (instruction, item.key) not in self.cache}.values())
        if missing and self.budget is not None and self.spent + len(missing) > self.budget:
            raise BudgetExhausted(f"{len(missing)} more policy calls needed, {self.left()} left of {self.budget}")
        if missing:
            answers = self.answerer.answer(instruction or None, missing)
            self.spent += len(missing)
            if self.on_calls is not None:
                self.on_calls(len(missing))
            for item, text in zip(missing, answers, strict=True):
                self.cache[(instruction, item.key)] = self._score(item, text)
        return [self.cache[(instruction, item.key)] for item in prompts]

    def fitness(self, instruction: str, prompts: Sequence[PromptItem]) -> float:
        scores = [e.score for e in self.evaluate(instruction, prompts)]
        return sum(scores) / len(scores) if scores else 0.0

    def _score(self, item: PromptItem, answer: str) -> Evaluation:
        example = example_of(item)
        score, _ = self.metric.score_with_feedback(example, dspy.Prediction(response=answer))
        failed: list[str] = []
        if item.verifiable and answer.strip():
            try:
                _, checks = verify_response(answer, example["instruction_id_list"], example["kwargs"],
                                            example["prompt"], self.metric.verifier or "loose")
                failed = [c.instruction_id for c in checks if not c.passed(self.metric.verifier or "loose")]
            except VerificationError:
                pass
        elif item.verifiable:
            failed = list(example["instruction_id_list"])
        return Evaluation(score, failed, answer)

    # -- resumable state -----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"spent": self.spent, "cache": [[instruction, key, dataclasses.asdict(e)]
                                               for (instruction, key), e in self.cache.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.spent = int(state["spent"])
        self.cache = {(instruction, key): Evaluation(**e) for instruction, key, e in state["cache"]}
