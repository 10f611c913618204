"""`rlhfkit policy ...`: sample candidates, build pairs, update a policy (SFT, DPO, GRPO/RLOO, PPO), evaluate it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from rlhfkit.cli.config_options import TRAINING_ALIASES, Typer, config_command, own
from rlhfkit.cli.console import console, summary_table

app = Typer(help="Generate candidates, update a policy (SFT, DPO, GRPO, RLOO, PPO) and evaluate it.",
                  no_args_is_help=True)

PromptsOpt = Annotated[str, typer.Option(
    "--prompts", help="Prompts JSONL (prompt + metadata, or IFEval's input_data.jsonl format), or 'builtin' / "
                      "'builtin:N' for rlhfkit's own instruction-following prompts.")]


def load_prompt_items(spec: str, limit: int | None = None):
    from policy.prompts import builtin_prompts, read_prompts

    if spec == "builtin" or spec.startswith("builtin:"):
        count = int(spec.split(":", 1)[1]) if ":" in spec else None
        items = builtin_prompts(count)
    else:
        items = read_prompts(spec)
    return items[:limit] if limit else items


def _show(summary: dict, title: str, keys: dict[str, str]) -> None:
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under accelerate launch / torchrun, one process reports
        return
    rows = {label: summary.get(key) for label, key in keys.items() if summary.get(key) is not None}
    metrics = summary.get("train_metrics", {})
    if "train_loss" in metrics:
        rows["train loss"] = f"{metrics['train_loss']:.4f}"
    rows["final model"] = summary.get("final_model")
    console.print(summary_table(title, rows))


def generate(config: Any, out: Path, prompts: str, limit: int | None) -> None:
    """Sample K answers per prompt, batched and seeded; an interrupted run resumes from <out>.partial."""
    from policy.generate import generate_candidates

    result = generate_candidates(load_prompt_items(prompts, limit), config, out)
    console.print(summary_table(f"candidates: {out}", {
        "prompts answered": result.prompts, **{f"skipped: {k}": v for k, v in result.skipped.items()},
        "tokens generated (this run)": result.new_tokens, "tokens/s": f"{result.tokens_per_s:.1f}",
        "engine": result.engine}))


@app.command()
def pairs(
    candidates: Annotated[Path, typer.Argument(help="Candidates JSONL from `rlhfkit policy generate`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Pairs JSONL for `rlhfkit annotate ...`.")],
    strategy: Annotated[str, typer.Option(help="all, random or best_worst (needs --reward-model).")] = "random",
    reward_model: Annotated[Path | None, typer.Option(help="Reward model folder, for best_worst.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for random pairs and A/B positions.")] = 0,
) -> None:
    """Turn candidates into pairs to label (metadata such as IFEval instructions travels along)."""
    from policy.candidate_pairs import candidate_pairs
    from policy.generate import read_candidates
    from preference.pairs import write_pairs

    scorer = None
    if reward_model is not None:
        from reward.model import load_reward_model

        scorer = load_reward_model(reward_model)
    built, skipped = candidate_pairs(read_candidates(candidates), strategy, scorer=scorer,  # type: ignore[arg-type]
                                     seed=seed)
    write_pairs(built, out)
    console.print(summary_table(f"pairs: {out}", {"pairs": len(built),
                                                  **{f"skipped: {k}": v for k, v in skipped.items()}}))


def sft(config: Any, data: Path) -> None:
    """Supervised fine-tuning with TRL's SFTTrainer (loss on the answers only)."""
    from policy.sft import read_sft_file, train_sft

    summary = train_sft(read_sft_file(data), config, where=str(data))
    _show(summary, f"SFT: {config.output_dir}", {"examples": "examples"})


def dpo(config: Any, data: Path) -> None:
    """DPO with TRL's DPOTrainer on preference judgments (ties and strength by the data layer's policies)."""
    from policy.dpo import train_dpo
    from preference.importers import ImportOptions
    from rlhfkit.cli.data import load_records

    records, _ = load_records(data, None, ImportOptions())
    summary = train_dpo(records, config)
    dropped = summary["export"]["dropped"]
    _show({**summary, **{f"dropped: {k}": v for k, v in dropped.items()}}, f"DPO: {config.output_dir}",
          {"training pairs": "pairs", "strength-weighted sampling": "weighted_sampling",
           **{f"dropped: {k}": f"dropped: {k}" for k in dropped}})


def rl(config: Any, prompts: str, limit: int | None) -> None:
    """Online RL rewarded by reward models and/or the IFEval verifier: TRL's GRPO or RLOO, or PPO with a value model."""
    from policy.config import PPOTrainingConfig
    from policy.ppo import train_ppo
    from policy.rl import train_rl

    items = load_prompt_items(prompts, limit)
    if isinstance(config, PPOTrainingConfig):
        summary = train_ppo(items, config)
        _show(summary, f"PPO: {config.output_dir}", {"prompts": "prompts", "updates": "updates"})
        console.print(f"curves (score, KL, value loss, ...): {Path(config.output_dir) / 'curves.png'}")
        return
    summary = train_rl(items, config)
    _show(summary, f"{config.algo.upper()}: {config.output_dir}", {"prompts": "prompts"})
    console.print(f"curves (reward, KL, length): {Path(config.output_dir) / 'curves.png'}")



def _limit(what: str) -> inspect.Parameter:
    return own("limit", Annotated[int | None, typer.Option(help=f"{what} only the first N prompts.")], None)


def _register_config_commands() -> None:
    """Every command whose settings are a config dataclass: options generated from its fields (`--config`,
    `--show-config`), the command's data as its own arguments."""
    from policy.config import (
        DPOTrainingConfig,
        GenerationConfig,
        PolicyEvalConfig,
        PPOTrainingConfig,
        RLTrainingConfig,
        SFTTrainingConfig,
    )

    prompts = own("prompts", PromptsOpt, "builtin")
    engine = {"system_prompt": ("--system",)}
    config_command(app, GenerationConfig, generate, name="generate",
                   aliases={**engine, "num_candidates": ("-k",)},
                   arguments=[own("out", Annotated[Path, typer.Option(
                       "--out", "-o", help="Candidates JSONL (one line per prompt).")]), prompts, _limit("Answer")])
    data = inspect.Parameter("data", inspect.Parameter.POSITIONAL_ONLY, annotation=Annotated[Path, typer.Argument(
        help="Preference store or any importable preference file.")])
    config_command(app, SFTTrainingConfig, sft, name="sft", aliases=TRAINING_ALIASES, arguments=[data.replace(
        annotation=Annotated[Path, typer.Argument(help="JSONL with prompt + completion, or messages.")])])
    config_command(app, DPOTrainingConfig, dpo, name="dpo", arguments=[data],
                   aliases={**TRAINING_ALIASES, "precompute_ref_log_probs": ("--precompute-ref",)})
    config_command(app, {"grpo": RLTrainingConfig, "rloo": RLTrainingConfig, "ppo": PPOTrainingConfig}, rl,
                   name="rl", selector="algo",
                   aliases={**TRAINING_ALIASES, "reward_models": ("--reward-model",),
                            "reward_weights": ("--reward-weight",)},
                   arguments=[prompts, _limit("Use")])
    config_command(app, PolicyEvalConfig, eval_cmd, name="eval", aliases=engine, arguments=[
        inspect.Parameter("model", inspect.Parameter.POSITIONAL_ONLY, annotation=Annotated[str, typer.Argument(
            help="Policy to evaluate (a run's model/ folder, or any model name).")]),
        own("out", Annotated[Path, typer.Option("--out", "-o", help="Folder for answers, eval.json and "
                                                                         "eval.png.")]),
        prompts,
        own("reference", Annotated[str | None, typer.Option(
            help="Reference policy (e.g. the model before training).")], None),
        own("reward_model", Annotated[Path | None, typer.Option(
            help="Reward model for the win rate against --reference.")], None),
        _limit("Evaluate")])



def eval_cmd(config: Any, model: str, out: Path, prompts: str, reference: str | None, reward_model: Path | None,
             limit: int | None) -> None:
    """Verifier pass rates (prompt / instruction level, strict / loose) and reward win rate, with 95% CIs."""
    from policy.evaluate import LEVELS, evaluate_policy

    scorer = None
    if reward_model is not None:
        from reward.model import load_reward_model

        scorer = load_reward_model(reward_model)
    report = evaluate_policy(model, load_prompt_items(prompts, limit), out, reference_model=reference,
                             reward_model=scorer, config=config)
    rows = {}
    verifier = report["verifier"]
    for level in LEVELS if verifier.get("n_prompts") else ():
        value = verifier[level]
        rows[f"pass rate, {level.replace('_', ' ')}"] = (f"{value['value']:.3f} "
                                                        f"[{value['ci_low']:.3f}, {value['ci_high']:.3f}]")
    if "verifier_delta" in report:
        delta = report["verifier_delta"]["prompt_loose"]
        rows["vs reference, prompt loose"] = f"{delta['delta']:+.3f} [{delta['ci_low']:+.3f}, {delta['ci_high']:+.3f}]"
    if report.get("win_rate", {}).get("n_prompts"):
        win = report["win_rate"]
        rows["reward win rate vs reference"] = f"{win['value']:.3f} [{win['ci_low']:.3f}, {win['ci_high']:.3f}]"
    rows["verifiable prompts"] = verifier.get("n_prompts", 0)
    console.print(summary_table(f"policy eval: {model}", rows))
    console.print(f"written: {out / 'eval.json'}, {out / 'eval.png'}")


_register_config_commands()
