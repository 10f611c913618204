"""`DSPyInstructionTuner.tune_module_instruction(module_class, signature, trainset)`: the best instruction for a
DSPy module, by the same instruction-following score the rest of rlhfkit uses.

Candidates, in rounds (iterative refinement: start simple, add constraints where answers fail):
- round 0: the signature's own instructions, an LLM-written template for the task they describe, and its
  deterministic fallback (`InstructionTemplateGenerator`);
- each later round: the best so far, refined with the constraints its answers broke most often, and (with an LM) a
  rewrite that names those failures (the evolutionary optimizer's operators).
Each candidate becomes `module_class(signature.with_instructions(candidate))` and is scored with `dspy.Evaluate` and
`reward.dspy_metrics.InstructionFollowingMetric` on the trainset; every example answered is one LM call, counted
against `budget`. The winner is applied to a fresh module, which `save`s and `load`s like any DSPy module (the
instruction is part of its saved state).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import dspy

from policy.instructions.evolution import Candidate, EvolutionaryInstructionOptimizer, EvolutionConfig
from policy.instructions.fitness import FitnessEvaluator
from policy.instructions.templates import InstructionTemplate, InstructionTemplateGenerator, fallback_template
from reward.dspy_metrics import InstructionFollowingMetric
from reward.ifeval import VerificationError, verify_response
from rlhfkit.core.errors import InputError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TuningResult:
    instruction: str
    score: float  # mean metric on the trainset, in [0, 1]
    module: Any  # a fresh module_class(signature) with the winning instruction
    scores: dict[str, float]  # every candidate tried -> its score
    lm_calls: int


class DSPyInstructionTuner:
    """`metric`: a DSPy metric (default: the IFEval verifier, loose); `lm` / `adapter`: the LM that answers and
    writes candidates (None: the configured one); `rounds`: refinement rounds after the first; `budget`: LM calls
    for answering (None: unlimited)."""

    def __init__(self, metric: Any = None, *, lm: Any = None, adapter: Any = None, rounds: int = 2,
                 budget: int | None = None, seed: int = 0, num_threads: int = 1):
        if rounds < 0:
            raise InputError("rounds must be 0 or more")
        self.metric = metric or InstructionFollowingMetric()
        self.lm, self.adapter, self.rounds, self.budget = lm, adapter, rounds, budget
        self.num_threads = num_threads  # examples answered at once; raise it for a served (batching) engine
        self.templates = InstructionTemplateGenerator(lm, adapter)
        # The evolutionary optimizer's operators, reused for rewrites (its evaluator is not used here).
        self.operators = EvolutionaryInstructionOptimizer(FitnessEvaluator(answerer=None), EvolutionConfig(
            llm_rate=1.0 if (lm or dspy.settings.lm) else 0.0, seed=seed), lm=lm, adapter=adapter)
        self.calls = 0

    def _context(self) -> dict[str, Any]:
        return {k: v for k, v in (("lm", self.lm), ("adapter", self.adapter)) if v is not None}

    def _evaluate(self, module: Any, trainset: Sequence[dspy.Example]) -> tuple[float, list[Any]]:
        if self.budget is not None and self.calls + len(trainset) > self.budget:
            raise _OutOfBudget
        with dspy.context(**self._context()):
            result = dspy.Evaluate(devset=list(trainset), metric=self.metric, num_threads=self.num_threads,
                                   display_progress=False,
                                   failure_score=0.0, max_errors=len(trainset) + 1)(module)
        self.calls += len(trainset)
        return result.score / 100.0, result.results

    @staticmethod
    def _failures(results: list[Any], response_field: str) -> Counter[str]:
        failed: Counter[str] = Counter()
        for example, prediction, _ in results:
            answer = getattr(prediction, response_field, None) if prediction is not None else None
            ids = example.get("instruction_id_list") if hasattr(example, "get") else None
            if not ids:
                continue
            if not isinstance(answer, str) or not answer.strip():
                failed.update(ids)
                continue
            try:
                _, checks = verify_response(answer, ids, example.get("kwargs") or [], example.get("prompt", ""))
            except VerificationError:
                continue
            failed.update(c.instruction_id for c in checks if not c.loose)
        return failed

    def tune_module_instruction(self, module_class: Any, signature: type[dspy.Signature],
                                trainset: Sequence[dspy.Example]) -> TuningResult:
        """The best instruction for `module_class(signature)` on `trainset` (see the module docstring)."""
        if not trainset:
            raise InputError("the trainset is empty: nothing to score instructions on")
        start = signature.instructions.strip()
        task = start or f"Produce {', '.join(signature.output_fields)} from {', '.join(signature.input_fields)}"
        written = self.templates.generate_template(task)
        fallback = InstructionTemplate(fallback_template(task), "fallback")
        pending = list(dict.fromkeys([start or task, written.instruction, fallback.instruction]))
        scores: dict[str, float] = {}
        results: dict[str, list[Any]] = {}
        response_field = getattr(self.metric, "response_field", "response")
        try:
            for round_index in range(self.rounds + 1):
                for candidate in pending:
                    if candidate in scores:
                        continue
                    scores[candidate], results[candidate] = self._evaluate(
                        module_class(signature.with_instructions(candidate)), trainset)
                    log.info("instruction candidate %.3f: %s", scores[candidate], candidate[:80])
                if round_index == self.rounds:
                    break
                best = max(scores, key=scores.get)
                failures = self._failures(results[best], response_field)
                refined = InstructionTemplateGenerator.refine(InstructionTemplate(best, "lm"), list(failures))
                parent = Candidate(best, "best", scores[best])
                rewrite = self.operators.mutate(parent, task, [])
                pending = [refined.instruction, rewrite.instruction]
        except _OutOfBudget:
            if not scores:
                raise InputError(f"the budget ({self.budget} LM calls) does not cover one pass over the "
                                 f"{len(trainset)} training examples") from None
            log.info("budget used up after %d candidates", len(scores))
        best = max(scores, key=scores.get)
        return TuningResult(best, scores[best], module_class(signature.with_instructions(best)), scores, self.calls)


class _OutOfBudget(Exception):
    pass
