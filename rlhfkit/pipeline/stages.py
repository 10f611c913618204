"""The stages of `rlhfkit run`, in order. Each takes the run's `Context`, writes into its own folder of the work
directory and returns a small dict for the manifest and the report.

A stage either finishes or leaves what it has done in a state its next attempt continues from: generation resumes
its `.partial` file, training resumes its last checkpoint, the instruction search its saved population, labeling
rebuilds its store from scratch (machine annotators) or pulls again (Label Studio is idempotent). Stages that write a
folder write it under a temporary name and rename it when complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from policy.prompts import PromptItem, builtin_prompts, read_prompts, split_prompts, write_prompts
from preference.schema import PreferenceRecord
from preference.store import PreferenceStore, replace_preferences
from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.errors import InputError
from rlhfkit.pipeline.config import PipelineConfig, section_values
from rlhfkit.pipeline.launch import run_training
from rlhfkit.pipeline.reads import RecordingConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Context:
    settings: PipelineConfig
    work: Path
    base: Path  # relative paths in the config are relative to the config file's folder
    console: Console
    reads: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Every setting the running stage read through `config`, by dotted path (kept in the manifest)."""

    @property
    def config(self) -> Any:
        """The run's config, read-only, recording what is read (see `rlhfkit.pipeline.reads`)."""
        return RecordingConfig(self.settings, self.reads)

    def folder(self, stage: str) -> Path:
        path = self.work / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def resolve(self, value: str) -> Path:
        return (self.base / value).expanduser()

    def prompts(self, part: str) -> list[PromptItem]:
        return read_prompts(self.work / "prompts" / f"{part}.jsonl")

    def records(self) -> list[PreferenceRecord]:
        return list(PreferenceStore(self.work / "label" / "store").records())

    @property
    def reward_model_dir(self) -> Path:
        return self.work / "reward" / "model"

    @cached_property
    def reward_model(self) -> Any:
        from reward.model import load_reward_model

        return load_reward_model(self.reward_model_dir)

    @property
    def updated_policy(self) -> str:
        return str(self.work / "update" / "model")

    def progress(self) -> Progress:
        return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=self.console, transient=True,
                        disable=not self.console.is_terminal)


# -- 1. prompts ---------------------------------------------------------------------------------------------------
def prompts(ctx: Context) -> dict[str, Any]:
    spec = ctx.config.prompts
    wanted = spec.train + spec.heldout
    if spec.source == "builtin":
        available = len(builtin_prompts(constraints=spec.constraints))
        if wanted > available:
            raise InputError(f"prompts.train + prompts.heldout = {wanted}, but the built-in set has {available} "
                             "prompts with prompts.constraints; ask for fewer, allow more constraints (null: all) "
                             "or give a prompts file")
        items = builtin_prompts(wanted, seed=ctx.config.seed, constraints=spec.constraints)
    else:
        items = read_prompts(ctx.resolve(spec.source))
    train, heldout = split_prompts(items, spec.heldout / wanted if len(items) <= wanted else
                                   spec.heldout / len(items), seed=ctx.config.seed)
    train, heldout = train[:spec.train], heldout[:spec.heldout]
    if len(train) < 2 or not heldout:
        raise InputError(f"prompts.source {spec.source}: {len(items)} prompt(s) give {len(train)} to train on and "
                         f"{len(heldout)} to hold out; at least 2 and 1 are needed")
    folder = ctx.folder("prompts")
    write_prompts(train, folder / "train.jsonl")
    write_prompts(heldout, folder / "heldout.jsonl")
    return {"train": len(train), "heldout": len(heldout), "verifiable": sum(i.verifiable for i in train + heldout),
            "source": spec.source}


# -- 2. candidates ------------------------------------------------------------------------------------------------
def generate(ctx: Context) -> dict[str, Any]:
    from policy.generate import GenerationConfig, generate_candidates, read_candidates

    spec, out = ctx.config.generate, ctx.folder("generate") / "candidates.jsonl"
    engine = None
    if not out.exists():  # else: finished in an attempt that was cut short before the manifest was written
        config = GenerationConfig(**section_values(spec, GenerationConfig), model=ctx.config.policy.model,
                                  seed=ctx.config.seed, system_prompt=ctx.config.policy.system_prompt)
        result = generate_candidates(ctx.prompts("train"), config, out)
        engine = result.engine
        if result.skipped:
            log.warning("prompts not answered: %s", dict(result.skipped))
    rows = read_candidates(out)
    return {"prompts": len(rows), "engine": engine, "answers": sum(len(r["candidates"]) for r in rows),
            "cut_at_length": sum(reason == "length" for r in rows for reason in r["finish_reasons"])}


# -- 3. labels ----------------------------------------------------------------------------------------------------
def label(ctx: Context) -> dict[str, Any]:
    from policy.candidate_pairs import candidate_pairs
    from policy.generate import read_candidates
    from preference.pairs import write_pairs

    spec, folder = ctx.config.label, ctx.folder("label")
    store = folder / "store"
    if spec.annotator == "file":
        pairs_made = 0
        _import_file(ctx, store)
    else:
        pairs, skipped = candidate_pairs(read_candidates(ctx.work / "generate" / "candidates.jsonl"), "all",
                                         seed=ctx.config.seed)
        if not pairs:
            raise InputError(f"no pairs to label: {dict(skipped)} (raise generate.temperature or "
                             "generate.num_candidates)")
        write_pairs(pairs, folder / "pairs.jsonl")
        pairs_made = len(pairs)
        if spec.annotator == "labelstudio":
            from rlhfkit.pipeline.labelstudio import label_in_label_studio

            label_in_label_studio(ctx, pairs, store)
        else:
            _machine_labels(ctx, pairs, store)
    records = ctx.records()
    labels = Counter(record.label.value for record in records)
    if not labels["a"] + labels["b"]:
        raise InputError(f"labeling gave no pair with a preferred answer ({dict(labels) or 'no judgments'}); nothing "
                         "to train on. Sample more or longer answers (generate.num_candidates, "
                         "generate.max_new_tokens) or use more prompts (prompts.train)")
    return {"pairs": pairs_made, "judgments": len(records), "annotator": spec.annotator,
            **{f"label_{key}": labels.get(key, 0) for key in ("a", "b", "tie", "both_bad")}}


def _machine_labels(ctx: Context, pairs: list[Any], store: Path) -> None:
    from annotation.registry import make_annotator

    spec = ctx.config.label
    # Only the chosen annotator's settings are read, so changing another's does not rerun this stage.
    if spec.annotator == "verifier":
        options = {"mode": spec.mode}
    elif spec.annotator == "judge":
        options = {"judge_lm": spec.judge_lm}
    else:
        options = {"reward_model": str(ctx.resolve(spec.reward_model or ""))}
    annotator: Any = make_annotator(spec.annotator, **options)
    with ctx.progress() as progress:
        task = progress.add_task(f"labeling {len(pairs)} pairs ({annotator.name})", total=len(pairs))
        results = annotator.annotate(pairs, on_pair=lambda: progress.advance(task))
    records = [record for record in results if record is not None]
    replace_preferences(store, lambda tmp: tmp.append(records, note=f"rlhfkit run: {annotator.name}"))


def _import_file(ctx: Context, store: Path) -> None:
    from preference.ingest import import_file

    replace_preferences(store, lambda tmp: import_file(ctx.resolve(ctx.config.label.file or ""), tmp))


# -- 4. reward model ----------------------------------------------------------------------------------------------
def _reward_training(ctx: Context) -> tuple[dict[str, list[PreferenceRecord]], Any, Callable[[], Any]]:
    """The reward stage's data split, its training config, and the training itself (run here or launched)."""
    from preference.split import split_by_prompt
    from reward.config import RewardTrainingConfig
    from reward.train import train_reward_model

    spec, folder = ctx.config.reward, ctx.folder("reward")
    parts = split_by_prompt(ctx.records(), {"train": 1 - spec.heldout, "test": spec.heldout}, seed=ctx.config.seed)
    config = RewardTrainingConfig(**section_values(spec, RewardTrainingConfig), output_dir=str(folder),
                                  seed=ctx.config.seed, resume=True, logging_steps=5, save_steps=50)
    return parts, config, lambda: train_reward_model(parts["train"], config)


def reward(ctx: Context) -> dict[str, Any]:
    from reward.evaluate import evaluate
    from reward.model import load_reward_model

    folder = ctx.folder("reward")
    parts, config, train = _reward_training(ctx)
    run_training(ctx, "reward", train)
    trained = json.loads((folder / "summary.json").read_text())
    result: dict[str, Any] = {"train_judgments": len(parts["train"]), "test_judgments": len(parts["test"]),
                              "truncated": trained["data"].get("truncated")}
    try:
        report = evaluate(load_reward_model(ctx.reward_model_dir), parts["test"], n_bootstrap=ctx.config.evaluate.
                          n_bootstrap, seed=ctx.config.seed)
    except ValueError as exc:  # e.g. only ties held out: the model is trained, the evaluation says why it is missing
        result["eval_error"] = str(exc)
        return result
    data = report.to_dict()
    atomic_write_text(folder / "eval.json", json.dumps(data, indent=1))
    report.plot(folder / "eval.png")
    accuracy_ci = data.get("accuracy_ci") or [None, None]
    result = {**result, "accuracy": data.get("accuracy"), "accuracy_ci": accuracy_ci,
              "decisive_test_pairs": data["counts"]["decisive"], "ece": data["calibration"]["ece"]}
    if shares := ctx.config.reward.learning_curve:
        result["learning_curve"] = _reward_curve(ctx, parts, config, result, shares)
    return result


def _reward_curve(ctx: Context, parts: dict[str, list[Any]], config: Any, full: dict[str, Any],
                  shares: list[float]) -> list[dict[str, Any]]:
    """The reward recipe retrained on shares of the training prompts, each scored on the same held-out pairs."""
    from reward.learning_curve import CurvePoint, curve_dicts, learning_curve, save_curve

    folder = ctx.folder("reward")
    with ctx.progress() as progress:
        task = progress.add_task(f"reward learning curve ({len(shares)} smaller models)", total=len(shares))
        points = learning_curve(parts["train"], parts["test"],
                                dataclasses.replace(config, output_dir=str(folder / "curve")), shares,
                                n_bootstrap=ctx.config.evaluate.n_bootstrap,
                                full=CurvePoint(1.0, full["train_judgments"], full["decisive_test_pairs"],
                                                full["accuracy"], list(full["accuracy_ci"])),
                                on_point=lambda _: progress.advance(task))
    save_curve(points, folder)
    return curve_dicts(points)


# -- 5. policy update ---------------------------------------------------------------------------------------------
def _update_training(ctx: Context) -> Callable[[], Any]:
    """The policy update the stage runs (here or launched), as one call."""
    from policy.config import DPOTrainingConfig, PPOTrainingConfig, RLTrainingConfig

    spec, folder = ctx.config.update, ctx.folder("update")
    run = dict(model=ctx.config.policy.model, output_dir=str(folder), system_prompt=ctx.config.policy.system_prompt,
               seed=ctx.config.seed, resume=True, save_steps=10, logging_steps=1)
    if spec.method == "dpo":
        from policy.dpo import train_dpo

        # The data are read inside the call: a launching main process builds the config (recording its reads) but
        # leaves the reading to the processes that train.
        config = DPOTrainingConfig(**section_values(spec.dpo, DPOTrainingConfig), **run)
        return lambda: train_dpo(ctx.records(), config)
    rewards = dict(reward_models=[str(ctx.reward_model_dir)], verifier="loose" if spec.verifier_reward else None)
    if spec.method in ("grpo", "rloo"):
        from policy.rl import train_rl

        rl = RLTrainingConfig(**section_values(spec.rl, RLTrainingConfig), **run, **rewards, algo=spec.method)
        return lambda: train_rl(ctx.prompts("train"), rl)
    from policy.ppo import train_ppo

    ppo = PPOTrainingConfig(**section_values(spec.ppo, PPOTrainingConfig), **run, **rewards)
    return lambda: train_ppo(ctx.prompts("train"), ppo)


def update(ctx: Context) -> dict[str, Any]:
    run_training(ctx, "update", _update_training(ctx))
    summary = json.loads((ctx.folder("update") / "summary.json").read_text())
    metrics = summary.get("train_metrics", {})
    return {"method": ctx.config.update.method, "model": ctx.updated_policy, "pairs": summary.get("pairs"),
            "train_loss": metrics.get("train_loss"), "seconds": metrics.get("train_runtime")}


# -- 6. policy before / after -------------------------------------------------------------------------------------
HEADLINE_LEVEL = "instruction_loose"


def evaluate(ctx: Context) -> dict[str, Any]:
    from policy.evaluate import PolicyEvalConfig, evaluate_policy

    spec = ctx.config.evaluate
    config = PolicyEvalConfig(**section_values(spec, PolicyEvalConfig), backend=ctx.config.generate.backend,
                              system_prompt=ctx.config.policy.system_prompt, seed=ctx.config.seed)
    report = evaluate_policy(ctx.updated_policy, ctx.prompts("heldout"), ctx.folder("evaluate"),
                             reference_model=ctx.config.policy.model, reward_model=ctx.reward_model, config=config)
    after, before = report["verifier"], report["reference"]["verifier"]
    # The headline level: IFEval's instruction-level loose accuracy (each instruction counts once).
    delta = report.get("verifier_delta", {}).get(HEADLINE_LEVEL, {})
    win = report.get("win_rate", {})
    return {"prompts": report["n_prompts"], "level": HEADLINE_LEVEL,
            "pass_rate_before": before.get(HEADLINE_LEVEL, {}).get("value"),
            "pass_rate_after": after.get(HEADLINE_LEVEL, {}).get("value"), "pass_rate_delta": delta.get("delta"),
            "pass_rate_delta_ci": [delta.get("ci_low"), delta.get("ci_high")], "win_rate": win.get("value"),
            "win_rate_ci": [win.get("ci_low"), win.get("ci_high")]}


# -- 7. DSPy scoring ----------------------------------------------------------------------------------------------
def dspy_scores(ctx: Context) -> dict[str, Any]:
    from rlhfkit.pipeline.dspy_scoring import score_policies

    result = score_policies(ctx)
    atomic_write_text(ctx.folder("dspy") / "scores.json", json.dumps(result, indent=1))
    if "skipped" in result:
        return {"skipped": result["skipped"]}
    return {name: entry["score"] for name, entry in result["policies"].items()}


# -- 8. instruction search ----------------------------------------------------------------------------------------
def instructions(ctx: Context) -> dict[str, Any]:
    spec, folder = ctx.config.instructions, ctx.folder("instructions")
    if not spec.enabled:
        return {"skipped": "instructions.enabled is false"}
    from policy.config import EvolutionConfig
    from policy.generate import Answerer
    from policy.instructions.evolution import EvolutionaryInstructionOptimizer
    from policy.instructions.fitness import FitnessEvaluator
    from reward.dspy_metrics import InstructionFollowingMetric
    from rlhfkit.lm.local_lm import lm_and_adapter

    metric = InstructionFollowingMetric(reward_model=ctx.reward_model, reward_weight=spec.reward_weight)
    evaluator = FitnessEvaluator(Answerer(ctx.updated_policy, max_new_tokens=spec.max_new_tokens,
                                          batch_size=ctx.config.evaluate.batch_size,
                                          backend=ctx.config.generate.backend), metric, budget=spec.budget)
    lm, adapter = (None, None) if spec.lm == "none" else lm_and_adapter(spec.lm, max_new_tokens=96,
                                                                         backend=ctx.config.generate.backend)
    config = EvolutionConfig(**section_values(spec, EvolutionConfig), seed=ctx.config.seed,
                             state_path=str(folder / "search.json"))
    optimizer = EvolutionaryInstructionOptimizer(evaluator, config, lm=lm, adapter=adapter)
    result = optimizer.optimize(spec.task, ctx.prompts("train")[:spec.prompts])
    atomic_write_text(folder / "result.json", json.dumps(result.to_dict(), indent=1))
    result.plot(folder / "search.png")
    summary = {"best_instruction": result.best_instruction, "start_instruction": result.start_instruction,
               "heldout_score": result.heldout_score,
               "start_heldout_score": result.start_heldout_score, "confirmed": result.confirmed,
               "policy_calls": result.policy_calls}
    if spec.heldout_check and result.best_instruction != result.start_instruction:
        summary["heldout_check"] = _instruction_heldout_check(ctx, result.start_instruction, result.best_instruction)
    return summary


def _instruction_heldout_check(ctx: Context, start: str, found: str) -> dict[str, Any]:
    """The found instruction against its start on the run's held-out prompts (the search never saw them): the
    updated policy's greedy answers under each, IFEval instruction-level loose pass rates and their paired change."""
    from policy.evaluate import PolicyEvalConfig, answer, paired_delta, pass_rates, verify_answers

    spec, heldout = ctx.config.instructions, ctx.prompts("heldout")
    rows = {}
    for name, instruction in (("start", start), ("found", found)):
        config = PolicyEvalConfig(max_new_tokens=spec.max_new_tokens, batch_size=ctx.config.evaluate.batch_size,
                                  backend=ctx.config.generate.backend, system_prompt=instruction,
                                  n_bootstrap=ctx.config.evaluate.n_bootstrap, seed=ctx.config.seed)
        answers = answer(ctx.updated_policy, heldout, ctx.folder("instructions") / f"heldout-{name}.jsonl", config)
        rows[name] = verify_answers(heldout, answers)
    rates = {name: pass_rates(value, config)["instruction_loose"]["value"] for name, value in rows.items()}
    delta = paired_delta(rows["start"], rows["found"], "instruction_loose", config)
    return {"prompts": delta["n"], "start": rates["start"], "found": rates["found"], "delta": delta["delta"],
            "delta_ci": [delta["ci_low"], delta["ci_high"]]}


# -- 9. report ----------------------------------------------------------------------------------------------------
def report(ctx: Context) -> dict[str, Any]:
    from rlhfkit.pipeline.report import write_report

    return {"report": str(write_report(ctx))}


Stage = Callable[[Context], dict[str, Any]]
STAGES: dict[str, tuple[str, Stage]] = {
    "prompts": ("split the prompts", prompts),
    "generate": ("sample candidate answers", generate),
    "label": ("label the pairs", label),
    "reward": ("train and evaluate the reward model", reward),
    "update": ("update the policy", update),
    "evaluate": ("evaluate the policy before and after", evaluate),
    "dspy": ("score the policies with DSPy modules", dspy_scores),
    "instructions": ("search for a better instruction", instructions),
    "report": ("write the report", report),
}
# Stages that train: the generation engines of earlier stages are stopped before them.
TRAINING: dict[str, Callable[[Context], Any]] = {
    "reward": lambda ctx: _reward_training(ctx)[2](),
    "update": lambda ctx: _update_training(ctx)(),
}
"""The training part of each training stage: what one process runs when the stage is launched on several."""
TRAINING_STAGES = frozenset(TRAINING)
