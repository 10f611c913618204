"""`rlhfkit policy ...`: sample candidates, build pairs, and update a policy (SFT, DPO, GRPO/RLOO), then evaluate it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from rlhfkit.cli.config_options import TRAINING_ALIASES, config_command
from rlhfkit.cli.console import console, summary_table

app = typer.Typer(help="Generate candidates, update a policy (SFT, DPO, GRPO, RLOO) and evaluate it.",
                  no_args_is_help=True)

PromptsOpt = Annotated[str, typer.Option(
    "--prompts", help="Prompts JSONL (prompt + metadata, or IFEval's input_data.jsonl format), or 'builtin' / "
                      "'builtin:N' for rlhfkit's own instruction-following prompts.")]
ModelOpt = Annotated[str, typer.Option(help="Policy: smollm2-135m-instruct, a folder (LoRA adapters load merged), "
                                            "a .gguf file or a cached hub id.")]
OutDirOpt = Annotated[Path, typer.Option("--output-dir", "-o", help="Run folder (model/, checkpoints/, curves.png).")]
SystemOpt = Annotated[str | None, typer.Option(help="System instruction before every prompt.")]
LoraOpt = Annotated[bool, typer.Option(help="Train LoRA adapters (default) or every weight (--no-lora).")]
MaxStepsOpt = Annotated[int, typer.Option(help="Stop after this many optimiser steps (-1: run the epochs).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue an interrupted run in --output-dir.")]
TemplateOpt = Annotated[str | None, typer.Option("--chat-template", help="A chat template (Jinja text or a file) "
                                                                         "for a model whose tokenizer has none.")]
BackendOpt = Annotated[str, typer.Option(help="Generation engine: auto (the fastest installed), vllm-server (vLLM in "
                                              "its own virtualenv), vllm (imported here, GPU) or transformers.")]
BatchOpt = Annotated[int | None, typer.Option(help="Prompts per chunk (default: 8 for transformers, 64 for vLLM).")]


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


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Candidates JSONL (one line per prompt).")],
    prompts: PromptsOpt = "builtin",
    model: ModelOpt = "smollm2-135m-instruct",
    num_candidates: Annotated[int, typer.Option("--num-candidates", "-k", help="Answers per prompt.")] = 2,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy, with -k 1).")] = 0.8,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold.")] = 0.95,
    batch_size: BatchOpt = None,
    seed: Annotated[int, typer.Option(help="Seed (runs and resumed runs are reproducible).")] = 0,
    system: SystemOpt = None,
    chat_template: TemplateOpt = None,
    backend: BackendOpt = "auto",
    limit: Annotated[int | None, typer.Option(help="Answer only the first N prompts.")] = None,
) -> None:
    """Sample K answers per prompt, batched and seeded; an interrupted run resumes from <out>.partial."""
    from policy.generate import GenerationConfig, generate_candidates

    config = GenerationConfig(model=model, num_candidates=num_candidates, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, batch_size=batch_size, seed=seed,
                              system_prompt=system, backend=backend,  # type: ignore[arg-type]
                              chat_template=chat_template)
    config.validate()
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
    """Online RL with rlhfkit reward models and/or the IFEval verifier as rewards: TRL's GRPO or RLOO, or rlhfkit's
    PPO with a value model."""
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


def _register_training_commands() -> None:
    from policy.config import DPOTrainingConfig, PPOTrainingConfig, RLTrainingConfig, SFTTrainingConfig

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
                   arguments=[inspect.Parameter("prompts", inspect.Parameter.KEYWORD_ONLY, default="builtin",
                                                annotation=PromptsOpt),
                              inspect.Parameter("limit", inspect.Parameter.KEYWORD_ONLY, default=None,
                                                annotation=Annotated[int | None, typer.Option(
                                                    help="Use only the first N prompts.")])])


_register_training_commands()


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Argument(help="Policy to evaluate (a run's model/ folder, or any model name).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for answers, eval.json and eval.png.")],
    prompts: PromptsOpt = "builtin",
    reference: Annotated[str | None, typer.Option(help="Reference policy (e.g. the model before training).")] = None,
    reward_model: Annotated[Path | None, typer.Option(help="Reward model for the win rate against --reference.")
                            ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit.")] = 256,
    batch_size: BatchOpt = None,
    system: SystemOpt = None,
    chat_template: TemplateOpt = None,
    backend: BackendOpt = "auto",
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N prompts.")] = None,
) -> None:
    """Verifier pass rates (prompt / instruction level, strict / loose) and reward win rate, with 95% CIs."""
    from policy.evaluate import LEVELS, PolicyEvalConfig, evaluate_policy

    scorer = None
    if reward_model is not None:
        from reward.model import load_reward_model

        scorer = load_reward_model(reward_model)
    config = PolicyEvalConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, system_prompt=system,
                              chat_template=chat_template, backend=backend)
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
