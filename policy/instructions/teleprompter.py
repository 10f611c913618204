"""`InstructionEvolution`: a DSPy optimizer (`Teleprompter`) that tunes the instruction of every predictor of a
program, and replaces an instruction only when the change is a measured gain.

    optimizer = InstructionEvolution(metric, InstructionEvolutionConfig(budget=400), proposer_lm=lm)
    optimized = optimizer.compile(program, trainset=train, valset=val)

In each round, for each predictor in turn (the others keep their current instruction), a few candidate
instructions are proposed from the current one:
- **best-practice operators** (always there, each in turn): state the constraint the program's answers broke most
  often when at least half of them broke it (IFEval failures, said plainly; otherwise the generic "follow every
  formatting and length instruction in the request"), add an explicit output format, drop a sentence, reorder
  sentences;
- **proposer rewrites** (when a proposer LM is given): the LM rewrites the instruction given what its answers got
  wrong; an unusable answer (chatter, echo, empty) is counted in `report["proposer_failures"]` and an operator's
  candidate is used instead.

Candidates race on the trainset: each is first scored on `race_fraction` of the examples and dropped unless its mean
there is above the current instruction's on the same examples; the survivors are scored on all of them. A survivor
replaces the current instruction only when the **paired** bootstrap interval of its per-example gain lies above
zero, at the confidence level `level`, corrected (Bonferroni) for the number of candidates compared in that step,
so a proposal that wins on a handful of examples by luck does not replace anything. With a `valset`, the final
program is compared with the start on it (paired, reported) and the start is returned unless the final program
scores higher there.

Every example answered by the program is one counted call (`budget`); scores are cached per instruction set and
example, so nothing is answered twice. The search state (current instructions, cache, random state, history) is
saved after every step to `state_path`, and a rerun with the same program, data and settings resumes there and
ends where an uninterrupted run would. A metric that raises or an LM answer the adapter cannot parse scores the
example 0 (`failure_score`), as in `dspy.Evaluate`; the search goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dspy
import numpy as np
from dspy.teleprompt import Teleprompter

from policy.config import EvolutionConfig, InstructionEvolutionConfig
from policy.instructions.evolution import Candidate, EvolutionaryInstructionOptimizer
from policy.instructions.fitness import BudgetExhausted, FitnessEvaluator
from reward.ifeval import VerificationError, verify_response
from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.errors import InputError
from rlhfkit.core.stats import grouped_bootstrap_ci

log = logging.getLogger(__name__)


def instructions_of(program: dspy.Module) -> dict[str, str]:
    """Each predictor's instruction, by predictor name."""
    return {name: predictor.signature.instructions for name, predictor in program.named_predictors()}


def with_instructions(program: dspy.Module, instructions: dict[str, str]) -> dspy.Module:
    """A copy of `program` whose predictors use `instructions` (by predictor name)."""
    copy = program.deepcopy()
    for name, predictor in copy.named_predictors():
        predictor.signature = predictor.signature.with_instructions(instructions[name])
    return copy


def paired_gain(candidate: Sequence[float], incumbent: Sequence[float], *, level: float, n_bootstrap: int,
                seed: int) -> tuple[float, float, float]:
    """Mean per-example gain of `candidate` over `incumbent` on the same examples, and its bootstrap interval."""
    diff = np.asarray(candidate, dtype=float) - np.asarray(incumbent, dtype=float)
    low, high = grouped_bootstrap_ci(diff, list(range(diff.size)), n_bootstrap=n_bootstrap, seed=seed, level=level)
    return float(diff.mean()), low, high


class InstructionEvolution(Teleprompter):
    """See the module docstring. `metric(example, prediction, trace=None) -> float` in [0, 1] (e.g.
    `reward.dspy_metrics.InstructionFollowingMetric`, which may include a reward model); `proposer_lm`: the DSPy
    LM that rewrites instructions (None: operators only); `proposer_adapter`: its adapter (e.g. rlhfkit's
    `PlainAdapter` for a small local model). `response_field` is the program output whose IFEval failures guide
    the operators (default: the metric's `response_field`, else `response`)."""

    def __init__(self, metric: Callable[..., Any], config: InstructionEvolutionConfig | None = None, *,
                 proposer_lm: Any = None, proposer_adapter: Any = None, response_field: str | None = None):
        super().__init__()
        self.metric = metric
        self.config = config or InstructionEvolutionConfig()
        self.config.validate()
        self.response_field = response_field or getattr(metric, "response_field", "response")
        self.operators = EvolutionaryInstructionOptimizer(
            FitnessEvaluator(answerer=None),
            EvolutionConfig(llm_rate=self.config.proposer_rate if proposer_lm is not None else 0.0,
                            seed=self.config.seed), lm=proposer_lm, adapter=proposer_adapter)
        if self.config.proposer_temperature:
            self.operators.lm_config = {"temperature": self.config.proposer_temperature}
        self.report: dict[str, Any] = {}

    # -- scoring -------------------------------------------------------------------------------------------------
    def _scores(self, program: dspy.Module, current: dict[str, str], examples: Sequence[dspy.Example],
                indices: Sequence[int], split: str = "train") -> list[float]:
        """Per-example scores of `program` with `current` instructions on `examples[i]` for i in `indices`
        (cached; the calls not yet made are counted against the budget first)."""
        key = json.dumps(current, sort_keys=True)
        cached = self._cache[split].setdefault(key, {})
        missing = [i for i in dict.fromkeys(indices) if str(i) not in cached]
        if missing:
            budget = self.config.budget
            if budget is not None and self._calls + len(missing) > budget:
                raise BudgetExhausted(f"{len(missing)} more program calls needed, {budget - self._calls} left")
            evaluate = dspy.Evaluate(devset=[examples[i] for i in missing], metric=self._guarded_metric,
                                     num_threads=self.config.num_threads, display_progress=False,
                                     failure_score=self.config.failure_score, max_errors=len(missing) + 1,
                                     provide_traceback=False)
            # DSPy logs an "Average Metric" line per evaluation and an error line per failed example, again for
            # every candidate: the failures are counted in the report instead, and the first of each kind logged.
            quiet = [logging.getLogger(name) for name in ("dspy.evaluate.evaluate", "dspy.utils.parallelizer")]
            levels = [logger.level for logger in quiet]
            for logger in quiet:
                logger.setLevel(logging.CRITICAL)
            try:
                result = evaluate(with_instructions(program, current))
            finally:
                for logger, level in zip(quiet, levels, strict=True):
                    logger.setLevel(level)
            failed = sum(1 for _, prediction, _ in result.results if not prediction.keys())
            if failed and not self._errors["program"]:
                log.warning("the program raised on %d of %d examples (scored %s, counted in report['errors'])",
                            failed, len(missing), self.config.failure_score)
            self._errors["program"] += failed
            self._calls += len(missing)
            for i, (example, prediction, score) in zip(missing, result.results, strict=True):
                value = float((score.score if isinstance(score, dspy.Prediction) else score) or 0.0)
                cached[str(i)] = [value if math.isfinite(value) else self.config.failure_score,
                                  self._failed(example, prediction)]
        return [cached[str(i)][0] for i in indices]

    def _guarded_metric(self, example: Any, prediction: Any, trace: Any = None) -> float:
        """The metric, with an exception scored `failure_score` and counted rather than raised."""
        try:
            return self.metric(example, prediction, trace)
        except Exception as exc:
            if not self._errors["metric"]:
                log.warning("the metric raised (%s: %s); such examples score %s and are counted in "
                            "report['errors']", type(exc).__name__, exc, self.config.failure_score)
            self._errors["metric"] += 1
            return self.config.failure_score

    def _failed(self, example: dspy.Example, prediction: Any) -> list[str]:
        """IFEval instructions the program's answer broke (none when the example carries none)."""
        ids = example.get("instruction_id_list") if hasattr(example, "get") else None
        if not ids:
            return []
        answer = getattr(prediction, self.response_field, None) if prediction is not None else None
        if not isinstance(answer, str) or not answer.strip():
            return list(ids)
        try:
            _, checks = verify_response(answer, ids, example.get("kwargs") or [], example.get("prompt", ""))
        except VerificationError:
            return []
        return [c.instruction_id for c in checks if not c.loose]

    def _failures(self, current: dict[str, str], indices: Sequence[int]) -> Counter[str]:
        cached = self._cache["train"].get(json.dumps(current, sort_keys=True), {})
        return Counter(name for i in indices if str(i) in cached for name in cached[str(i)][1])

    # -- proposals -----------------------------------------------------------------------------------------------
    def propose(self, instruction: str, failures: Counter[str], task: str, exclude: Sequence[str] = (),
                examples: int = 0) -> list[str]:
        """Up to `candidates` new instructions made from `instruction`: distinct, never the instruction itself nor
        one in `exclude` (those already scored). `failures`: how often each IFEval instruction was broken over
        `examples` answers."""
        # A rule added for a failure most examples do not share (one prompt asks for JSON, another for a list)
        # would break the rest: only a failure on at least half of the examples becomes a stated constraint;
        # otherwise the constraint operator adds the generic one (follow the request's own format instructions).
        common = Counter({name: n for name, n in failures.items() if examples and n >= examples / 2})
        proposals: list[str] = []
        parent = Candidate(instruction, "current")
        # Each operator in turn (in a shuffled order), so one step's proposals are different kinds of change.
        operators = self.operators.structural_operators(instruction)
        self.operators.rng.shuffle(operators)
        for attempt in range(10 * self.config.candidates):
            child = self.operators.mutate(parent, task, [], failures=failures, constraint_failures=common,
                                          operator=operators[attempt % len(operators)]).instruction.strip()
            if child and child != instruction and child not in proposals and child not in exclude:
                proposals.append(child)
            if len(proposals) == self.config.candidates:
                break
        return proposals

    # -- the search ----------------------------------------------------------------------------------------------
    def _fingerprint(self, student: dspy.Module, trainset: Sequence[Any], valset: Sequence[Any] | None) -> str:
        raw = json.dumps([instructions_of(student), [dict(e) for e in trainset],
                          [dict(e) for e in valset or []], dataclasses.asdict(self.config)],
                         sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def _save(self, fingerprint: str, step: int, current: dict[str, str]) -> None:
        if self.config.state_path:
            atomic_write_text(Path(self.config.state_path), json.dumps({
                "fingerprint": fingerprint, "step": step, "current": current, "cache": self._cache,
                "calls": self._calls, "history": self._history, "rng": self.operators.rng.getstate(),
                "errors": self._errors,
                "proposer_failures": self.operators.lm_failures, "rollouts": self.operators.rollouts},
                default=list))

    def _load(self, fingerprint: str) -> tuple[int, dict[str, str]] | None:
        path = Path(self.config.state_path) if self.config.state_path else None
        if path is None or not path.exists():
            return None
        state = json.loads(path.read_text())
        if state.get("fingerprint") != fingerprint:
            raise InputError(f"{path} holds a search of another program, data or settings; delete it or choose "
                             "another state_path")
        self._cache, self._calls, self._history = state["cache"], state["calls"], state["history"]
        self._errors = state["errors"]
        version, internal, gauss = state["rng"]
        self.operators.rng.setstate((version, tuple(internal), gauss))
        self.operators.lm_failures, self.operators.rollouts = state["proposer_failures"], state["rollouts"]
        log.info("resuming the instruction search after step %d", state["step"])
        return state["step"], state["current"]

    def compile(self, student: dspy.Module, *, trainset: list[dspy.Example], teacher: Any = None,
                valset: list[dspy.Example] | None = None, **kwargs: Any) -> dspy.Module:
        """The student with each predictor's instruction tuned (see the module docstring); `self.report` says
        what was tried, what was kept and what it cost."""
        if not trainset:
            raise InputError("the trainset is empty: nothing to score instructions on")
        if valset is not None and not valset:
            raise InputError("the valset is empty: give examples or None")
        start = instructions_of(student)
        if not start:
            raise InputError("the program has no predictors: nothing to tune")
        # split -> instruction set (JSON) -> example index -> [score, IFEval instructions broken]
        self._cache: dict[str, dict[str, dict[str, list]]] = {"train": {}, "val": {}}
        self._calls, self._history = 0, []
        self._errors = {"metric": 0, "program": 0}  # examples scored failure_score because a call raised
        fingerprint = self._fingerprint(student, trainset, valset)
        loaded = self._load(fingerprint)
        done, current = loaded if loaded else (-1, dict(start))
        order = list(range(len(trainset)))
        random.Random(self.config.seed).shuffle(order)
        first = order[: max(1, math.ceil(self.config.race_fraction * len(order)))]
        names = list(start)
        steps = [(round_index, name) for round_index in range(self.config.rounds) for name in names]
        reserve = 2 * len(valset) if valset else 0  # the final comparison on the valset is paid for up front
        budget = self.config.budget
        if budget is not None:
            self.config.budget = budget - reserve
        try:
            if budget is not None and self.config.budget is not None and self.config.budget < len(trainset):
                raise InputError(f"the budget ({budget} program calls) does not cover one pass over the "
                                 f"{len(trainset)} training examples" + (f" and the valset comparison ({reserve})"
                                                                         if reserve else ""))
            base = self._scores(student, current, trainset, order)
            for step in range(done + 1, len(steps)):
                round_index, name = steps[step]
                try:
                    current = self._step(student, current, name, trainset, order, first, round_index)
                except BudgetExhausted as exc:
                    log.info("budget used up at round %d, predictor %s: %s", round_index, name, exc)
                    self._history.append({"round": round_index, "predictor": name, "stopped": str(exc)})
                    break
                self._save(fingerprint, step, current)
        finally:
            self.config.budget = budget
        train_score = float(np.mean(self._scores(student, current, trainset, order)))
        self.report = {"start": start, "instructions": current, "train_score": train_score,
                       "start_train_score": float(np.mean(base)), "calls": self._calls, "history": self._history,
                       "proposer_failures": self.operators.lm_failures, "errors": dict(self._errors)}
        if valset and current != start:
            indices = list(range(len(valset)))
            final, begin = (self._scores(student, current, valset, indices, "val"),
                            self._scores(student, start, valset, indices, "val"))
            gain, low, high = paired_gain(final, begin, level=self.config.level, n_bootstrap=self.config.n_bootstrap,
                                          seed=self.config.seed)
            kept = gain > 0
            self.report.update(val_score=float(np.mean(final)), start_val_score=float(np.mean(begin)),
                               val_gain=gain, val_gain_ci=[low, high], confirmed=kept, calls=self._calls)
            if not kept:
                current = dict(start)
                self.report["instructions"] = current
        return with_instructions(student, current)

    def _step(self, student: dspy.Module, current: dict[str, str], name: str, trainset: Sequence[dspy.Example],
              order: list[int], first: list[int], round_index: int) -> dict[str, str]:
        """One predictor's proposals raced against its current instruction; the new instructions."""
        task = current[name] or "Respond to the request."
        tried = {json.loads(key)[name] for key in self._cache["train"]}
        proposals = self.propose(current[name], self._failures(current, order), task, exclude=tried,
                                 examples=len(order))
        incumbent_first = self._scores(student, current, trainset, first)
        survivors = []
        for text in proposals:
            trial = {**current, name: text}
            # Successive halving: only a proposal that beats the incumbent on the first part is worth the rest
            # (a tie there is no sign of the gain the full test must show).
            if np.mean(self._scores(student, trial, trainset, first)) > np.mean(incumbent_first):
                survivors.append(trial)
        incumbent = self._scores(student, current, trainset, order)
        level = 1 - (1 - self.config.level) / max(1, len(proposals))  # Bonferroni over this step's proposals
        record: dict[str, Any] = {"round": round_index, "predictor": name, "proposed": proposals,
                                  "raced_out": len(proposals) - len(survivors), "accepted": None}
        best = None
        for trial in survivors:
            gain, low, high = paired_gain(self._scores(student, trial, trainset, order), incumbent, level=level,
                                          n_bootstrap=self.config.n_bootstrap, seed=self.config.seed)
            if low > 0 and (best is None or gain > best[0]):
                best = (gain, low, high, trial)
        if best is not None:
            gain, low, high, trial = best
            record.update(accepted=trial[name], gain=gain, gain_ci=[low, high])
            current = trial
        record.update(score=float(np.mean(self._scores(student, current, trainset, order))), calls=self._calls)
        self._history.append(record)
        return current
