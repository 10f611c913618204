"""`rlhfkit instructions ...`: write instruction templates, score an instruction, and search for a better one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from rlhfkit.cli.config_options import Typer
from rlhfkit.cli.console import console, summary_table
from rlhfkit.cli.policy import PromptsOpt, load_prompt_items
from rlhfkit.core.errors import InputError

app = Typer(help="Instruction templates (LLM), instruction scoring, evolutionary instruction search and DSPy "
                       "instruction tuning.", no_args_is_help=True)

LmOpt = Annotated[str, typer.Option("--lm", help="LM that writes and rewrites instructions: a bundled name "
                                                 "(offline), local:PATH, a LiteLLM model string, or 'none' "
                                                 "(deterministic operators only).")]
PolicyOpt = Annotated[str, typer.Option("--model", help="Policy that answers the prompts under the instruction.")]
RewardOpt = Annotated[Path | None, typer.Option("--reward-model", help="Add a reward model to the score.")]
RewardWeightOpt = Annotated[float, typer.Option(help="Weight of the reward model against the verifier (1).")]
TokensOpt = Annotated[int, typer.Option(help="Answer length limit when scoring.")]


def _lm(spec: str):
    from rlhfkit.lm.local_lm import lm_and_adapter

    return (None, None) if spec == "none" else lm_and_adapter(spec, max_new_tokens=96)


def _check_scorable(items, reward_model: Path | None) -> None:
    if reward_model is None and not any(item.verifiable for item in items):
        raise InputError("these prompts carry no IFEval instructions (instruction_id_list + kwargs) and no reward "
                         "model was given, so every instruction would score 0; add --reward-model or use "
                         "verifiable prompts (builtin, or IFEval's input_data.jsonl)")


def _metric(reward_model: Path | None, reward_weight: float):
    from reward.dspy_metrics import InstructionFollowingMetric

    scorer = None
    if reward_model is not None:
        from reward.model import load_reward_model

        scorer = load_reward_model(reward_model)
    return InstructionFollowingMetric(reward_model=scorer, reward_weight=reward_weight)


@app.command()
def generate(
    task: Annotated[str, typer.Argument(help="What the instruction should make the assistant do.")],
    output_format: Annotated[str | None, typer.Option("--format", help="json, list, one_word, number, sentence, "
                                                                       "paragraph, or your own words.")] = None,
    constraint: Annotated[list[str], typer.Option(help="A constraint to state (repeatable).")] = [],  # noqa: B006
    lm: LmOpt = "smollm2-135m-instruct",
) -> None:
    """Write an instruction template for TASK with an LM (checked, with a deterministic fallback)."""
    from policy.instructions.templates import InstructionTemplateGenerator

    model, adapter = _lm(lm)
    template = InstructionTemplateGenerator(model, adapter).generate_template(task, output_format, constraint)
    rows = {"written by": template.source, **({"why": template.reason} if template.reason else {}),
            "template": template.text}
    console.print(summary_table("instruction template", rows))


@app.command()
def score(
    instruction: Annotated[str, typer.Argument(help="The instruction (the policy's system prompt); '' for none.")],
    prompts: PromptsOpt = "builtin:32",
    model: PolicyOpt = "smollm2-135m-instruct",
    reward_model: RewardOpt = None,
    reward_weight: RewardWeightOpt = 1.0,
    max_new_tokens: TokensOpt = 192,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSON with per-prompt scores and answers.")] = None,
) -> None:
    """Score an instruction: the policy answers the prompts under it; verifier (and reward) score the answers."""
    from collections import Counter

    from policy.generate import Answerer
    from policy.instructions.fitness import FitnessEvaluator
    from rlhfkit.core.atomic import atomic_write_text
    from rlhfkit.core.stats import grouped_bootstrap_ci

    items = load_prompt_items(prompts)
    _check_scorable(items, reward_model)
    evaluator = FitnessEvaluator(Answerer(model, max_new_tokens=max_new_tokens, progress=True),
                                 _metric(reward_model, reward_weight))
    results = evaluator.evaluate(instruction, items)
    values = [r.score for r in results]
    low, high = grouped_bootstrap_ci(values, [item.key for item in items], n_bootstrap=2000)
    failed = Counter(f for r in results for f in r.failed)
    console.print(summary_table(f"instruction score on {len(items)} prompts", {
        "score (mean)": f"{sum(values) / len(values):.3f} [{low:.3f}, {high:.3f}]",
        "policy calls": evaluator.spent,
        **{f"broken: {name}": count for name, count in failed.most_common(5)}}))
    if out is not None:
        atomic_write_text(out, json.dumps({"instruction": instruction, "score": sum(values) / len(values),
                                           "ci_low": low, "ci_high": high, "per_prompt": [
                                               {"key": item.key, "score": r.score, "failed": r.failed,
                                                "answer": r.answer} for item, r in zip(items, results)]}, indent=1))


def optimize(config: Any, *, out: Path, task: str, start: str | None, prompts: str, model: str, lm: str,
             budget: int | None, reward_model: Path | None, reward_weight: float, max_new_tokens: int) -> None:
    """Evolve instructions (LLM and structural operators) on a train split, confirm the winner on held-out prompts.
    An interrupted search resumes from OUT/search.json."""
    from policy.generate import Answerer
    from policy.instructions.evolution import EvolutionaryInstructionOptimizer
    from policy.instructions.fitness import FitnessEvaluator
    from rlhfkit.core.atomic import atomic_write_text

    if config.state_path is None:
        config.state_path = str(out / "search.json")
    items = load_prompt_items(prompts)
    _check_scorable(items, reward_model)
    out.mkdir(parents=True, exist_ok=True)
    model_lm, adapter = _lm(lm)
    evaluator = FitnessEvaluator(Answerer(model, max_new_tokens=max_new_tokens), _metric(reward_model, reward_weight),
                                 budget=budget)
    optimizer = EvolutionaryInstructionOptimizer(evaluator, config, lm=model_lm, adapter=adapter)
    result = optimizer.optimize(task, items, start)
    atomic_write_text(out / "result.json", json.dumps(result.to_dict(), indent=1))
    result.plot(out / "search.png")
    console.print(summary_table(f"instruction search: {out}", {
        "chosen instruction": result.best_instruction,
        "held-out score (chosen)": f"{result.heldout_score:.3f}",
        "held-out score (start)": f"{result.start_heldout_score:.3f}",
        "confirmed on held-out": result.confirmed,
        "train score": f"{result.train_score:.3f}",
        "policy calls": result.policy_calls,
        "LM answers rejected": result.lm_failures,
        "plot": out / "search.png"}))


def tune(config: Any, *, out: Path, prompts: str, model: str, lm: str, start: str, backend: str,
         reward_model: Path | None, reward_weight: float, max_new_tokens: int) -> None:
    """Tune the instruction of a DSPy program (prompt -> response) with rlhfkit's `InstructionEvolution`
    Teleprompter: a proposal replaces the instruction only on a significant paired gain. Writes OUT/program.json
    (load it with `dspy.Predict("prompt -> response").load(...)`), OUT/report.json; resumes from OUT/search.json."""
    import dspy

    from policy.instructions.fitness import example_of
    from policy.instructions.teleprompter import InstructionEvolution
    from rlhfkit.core.atomic import atomic_write_text
    from rlhfkit.lm.local_lm import local_dspy_lm
    from rlhfkit.lm.plain_adapter import PlainAdapter

    items = load_prompt_items(prompts)
    _check_scorable(items, reward_model)
    out.mkdir(parents=True, exist_ok=True)
    if config.state_path is None:
        config.state_path = str(out / "search.json")
    proposer, proposer_adapter = _lm(lm)
    optimizer = InstructionEvolution(_metric(reward_model, reward_weight), config, proposer_lm=proposer,
                                     proposer_adapter=proposer_adapter)
    trainset = [dspy.Example(**example_of(item)).with_inputs("prompt") for item in items]
    program = dspy.Predict(dspy.Signature("prompt -> response", start))
    task_lm = local_dspy_lm(model, max_new_tokens=max_new_tokens, backend=backend)
    with dspy.context(lm=task_lm, adapter=PlainAdapter()):
        tuned = optimizer.compile(program, trainset=trainset)
    staged = out / f".program.{os.getpid()}.json"  # DSPy's save wants a .json name; renamed into place
    tuned.save(staged)
    os.replace(staged, out / "program.json")
    report = optimizer.report
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    accepted = [h for h in report["history"] if h.get("accepted")]
    console.print(summary_table(f"instruction tuning: {out}", {
        "instruction": tuned.signature.instructions,
        "train score (tuned)": f"{report['train_score']:.3f}",
        "train score (start)": f"{report['start_train_score']:.3f}",
        "replacements (CI above 0)": len(accepted),
        "program calls": report["calls"],
        "proposer answers rejected": report["proposer_failures"],
        "program": out / "program.json"}))



def _register_config_commands() -> None:
    """The searches whose settings are a config dataclass: options generated from it (`--config`,
    `--show-config`), the data and models as the command's own arguments."""
    from policy.config import EvolutionConfig, InstructionEvolutionConfig
    from rlhfkit.cli.config_options import config_command, own

    config_command(app, EvolutionConfig, optimize, name="optimize", help=optimize.__doc__,
                   aliases={"population_size": ("--population",)}, arguments=[
        own("out", Annotated[Path, typer.Option("--out", "-o", help="Folder: result.json, search.json (resume), "
                                                                    "search.png.")]),
        own("task", Annotated[str, typer.Option(help="The task the instruction is for.")],
            "Answer the request and follow every instruction in it about format, length and wording"),
        own("start", Annotated[str | None, typer.Option(help="The starting instruction (default: the task).")], None),
        own("prompts", PromptsOpt, "builtin:40"),
        own("model", PolicyOpt, "smollm2-135m-instruct"),
        own("lm", LmOpt, "smollm2-135m-instruct"),
        own("budget", Annotated[int | None, typer.Option(help="Policy calls at most (answers generated).")], None),
        own("reward_model", RewardOpt, None),
        own("reward_weight", RewardWeightOpt, 1.0),
        own("max_new_tokens", TokensOpt, 192)])
    config_command(app, InstructionEvolutionConfig, tune, name="tune", help=tune.__doc__, arguments=[
        own("out", Annotated[Path, typer.Option("--out", "-o", help="Folder: program.json, report.json, "
                                                                    "search.json (resume).")]),
        own("prompts", PromptsOpt, "builtin:48"),
        own("model", Annotated[str, typer.Option("--model", help="Model that answers under the instruction: a "
                                                             "bundled name or a local folder.")],
            "smollm2-135m-instruct"),
        own("lm", LmOpt, "smollm2-135m-instruct"),
        own("start", Annotated[str, typer.Option(help="The starting instruction.")], "Respond to the request."),
        own("backend", Annotated[str, typer.Option(help="auto (vLLM when installed), transformers or "
                                                        "vllm-server.")], "auto"),
        own("reward_model", RewardOpt, None),
        own("reward_weight", RewardWeightOpt, 1.0),
        own("max_new_tokens", TokensOpt, 128)])


_register_config_commands()
