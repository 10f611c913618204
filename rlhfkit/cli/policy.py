"""`rlhfkit policy ...`: sample candidates, build pairs, and update a policy (SFT, DPO, GRPO/RLOO), then evaluate it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlhfkit.cli.console import console, fail, summary_table

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


@app.command()
def sft(
    data: Annotated[Path, typer.Argument(help="JSONL with prompt + completion, or messages.")],
    output_dir: OutDirOpt = Path("runs/sft"),
    model: ModelOpt = "smollm2-135m-instruct",
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 1.0,
    max_steps: MaxStepsOpt = -1,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Examples per step (per device).")] = 4,
    lora: LoraOpt = True,
    system: SystemOpt = None,
    chat_template: TemplateOpt = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    resume: ResumeOpt = False,
) -> None:
    """Supervised fine-tuning with TRL's SFTTrainer (loss on the answers only)."""
    from policy.sft import SFTTrainingConfig, read_sft_file, train_sft

    config = SFTTrainingConfig(model=model, output_dir=str(output_dir), num_train_epochs=epochs, max_steps=max_steps,
                               learning_rate=learning_rate, per_device_train_batch_size=batch_size, lora=lora,
                               system_prompt=system, chat_template=chat_template, seed=seed, resume=resume)
    config.validate()
    summary = train_sft(read_sft_file(data), config, where=str(data))
    _show(summary, f"SFT: {output_dir}", {"examples": "examples"})


@app.command()
def dpo(
    data: Annotated[Path, typer.Argument(help="Preference store or any importable preference file.")],
    output_dir: OutDirOpt = Path("runs/dpo"),
    model: ModelOpt = "smollm2-135m-instruct",
    loss_type: Annotated[list[str], typer.Option(help="TRL DPO loss (repeat to combine): sigmoid, ipo, robust, "
                                                      "hinge, apo_zero, sppo_hard, ...")] = ["sigmoid"],  # noqa: B006
    beta: Annotated[float, typer.Option(help="KL strength: higher keeps the policy nearer the reference.")] = 0.1,
    label_smoothing: Annotated[float, typer.Option(help="robust / exo_pair: share of flipped labels.")] = 0.0,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 1.0,
    max_steps: MaxStepsOpt = -1,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-5,
    batch_size: Annotated[int, typer.Option(help="Pairs per step (per device).")] = 4,
    max_length: Annotated[int, typer.Option(help="Tokens per prompt + answer.")] = 1024,
    ties: Annotated[str, typer.Option(help="'drop' or 'margin0' (train both orders).")] = "drop",
    both_bad: Annotated[str, typer.Option(help="'drop' or 'tie'.")] = "drop",
    strength_weighting: Annotated[bool, typer.Option(help="Draw pairs in proportion to judgment strength.")] = True,
    precompute_ref: Annotated[bool, typer.Option(help="Precompute the reference log-probs once.")] = False,
    pairs_per_prompt: Annotated[int | None, typer.Option(help="At most this many pairs per prompt, the strongest "
                                                               "first (default: every pair).")] = None,
    lora: LoraOpt = True,
    system: SystemOpt = None,
    chat_template: TemplateOpt = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    resume: ResumeOpt = False,
) -> None:
    """DPO with TRL's DPOTrainer on preference judgments (ties and strength by the data layer's policies)."""
    from policy.dpo import DPOTrainingConfig, train_dpo
    from preference.importers import ImportOptions
    from rlhfkit.cli.data import load_records

    config = DPOTrainingConfig(model=model, output_dir=str(output_dir), loss_type=list(loss_type), beta=beta,
                               label_smoothing=label_smoothing, num_train_epochs=epochs, max_steps=max_steps,
                               learning_rate=learning_rate, per_device_train_batch_size=batch_size,
                               max_length=max_length, ties=ties, both_bad=both_bad,  # type: ignore[arg-type]
                               strength_weighting=strength_weighting, precompute_ref_log_probs=precompute_ref,
                               pairs_per_prompt=pairs_per_prompt, lora=lora, system_prompt=system,
                               chat_template=chat_template, seed=seed, resume=resume)
    config.validate()
    records, _ = load_records(data, None, ImportOptions())
    summary = train_dpo(records, config)
    dropped = summary["export"]["dropped"]
    _show({**summary, **{f"dropped: {k}": v for k, v in dropped.items()}}, f"DPO: {output_dir}",
          {"training pairs": "pairs", "strength-weighted sampling": "weighted_sampling",
           **{f"dropped: {k}": f"dropped: {k}" for k in dropped}})


@app.command()
def rl(
    output_dir: OutDirOpt = Path("runs/rl"),
    algo: Annotated[str, typer.Option(help="grpo, rloo or ppo (actor-critic with a value model).")] = "grpo",
    prompts: PromptsOpt = "builtin",
    model: ModelOpt = "smollm2-135m-instruct",
    reward_model: Annotated[list[Path], typer.Option(help="Reward model folder (repeat for several).")] = [],  # noqa: B006
    verifier: Annotated[str | None, typer.Option(help="Add the IFEval verifier reward: strict or loose.")] = None,
    reward_weight: Annotated[list[float], typer.Option(help="One weight per reward source (models, then the "
                                                            "verifier).")] = [],  # noqa: B006
    num_generations: Annotated[int, typer.Option(help="Answers per prompt (the group).")] = 4,
    max_completion_length: Annotated[int, typer.Option(help="Answer length limit in tokens.")] = 128,
    beta: Annotated[float, typer.Option(help="KL penalty to the reference policy.")] = 0.04,
    epochs: Annotated[float, typer.Option(help="Passes over the prompts.")] = 1.0,
    max_steps: MaxStepsOpt = -1,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-5,
    batch_size: Annotated[int, typer.Option(help="Answers per step (per device); a multiple of num_generations.")
                          ] = 4,
    lora: LoraOpt = True,
    system: SystemOpt = None,
    chat_template: TemplateOpt = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    resume: ResumeOpt = False,
    limit: Annotated[int | None, typer.Option(help="Use only the first N prompts.")] = None,
    updates: Annotated[int | None, typer.Option(help="PPO: updates (default: --max-steps, else one pass over the "
                                                     "prompts per epoch).")] = None,
    ppo_epochs: Annotated[int, typer.Option(help="PPO: optimisation passes over each rollout.")] = 2,
    adaptive_kl: Annotated[bool, typer.Option(help="PPO: adapt the KL coefficient towards --kl-target.")] = False,
    kl_target: Annotated[float, typer.Option(help="PPO: KL per answer the adaptive controller aims at.")] = 6.0,
    critic_model: Annotated[str | None, typer.Option(help="PPO: critic start (default: the policy's weights); a "
                                                          "decoder reward model sharing the policy's tokenizer.")
                            ] = None,
    missing_eos_penalty: Annotated[float | None, typer.Option(help="PPO: subtract from answers cut without EOS.")
                                   ] = None,
) -> None:
    """Online RL with rlhfkit reward models and/or the IFEval verifier as rewards: TRL's GRPO or RLOO, or rlhfkit's
    PPO with a value model."""
    ppo_only = {"--updates": updates is not None, "--ppo-epochs": ppo_epochs != 2, "--adaptive-kl": adaptive_kl,
                "--kl-target": kl_target != 6.0, "--critic-model": critic_model is not None,
                "--missing-eos-penalty": missing_eos_penalty is not None}
    if algo != "ppo" and any(ppo_only.values()):
        fail(f"{', '.join(k for k, v in ppo_only.items() if v)} only apply to --algo ppo")
    if algo == "ppo" and num_generations != 4:
        fail("--num-generations applies to GRPO and RLOO; PPO samples one answer per prompt (--batch-size prompts)")
    items = load_prompt_items(prompts, limit)
    if algo == "ppo":
        from policy.ppo import PPOTrainingConfig, train_ppo

        if updates is None:
            updates = max_steps if max_steps > 0 else max(1, int(len(items) * epochs / batch_size))
        ppo = PPOTrainingConfig(model=model, output_dir=str(output_dir), reward_models=[str(p) for p in reward_model],
                                verifier=verifier, reward_weights=list(reward_weight) or None,  # type: ignore[arg-type]
                                updates=updates, rollout_batch_size=batch_size,
                                mini_batch_size=min(4, batch_size), ppo_epochs=ppo_epochs,
                                max_new_tokens=max_completion_length, kl_coef=beta, adaptive_kl=adaptive_kl,
                                kl_target=kl_target, critic_model=critic_model,
                                missing_eos_penalty=missing_eos_penalty, learning_rate=learning_rate, lora=lora,
                                system_prompt=system, chat_template=chat_template, seed=seed, resume=resume)
        ppo.validate()
        summary = train_ppo(items, ppo)
        _show(summary, f"PPO: {output_dir}", {"prompts": "prompts", "updates": "updates"})
        console.print(f"curves (score, KL, value loss, ...): {output_dir / 'curves.png'}")
        return
    from policy.rl import RLTrainingConfig, train_rl

    config = RLTrainingConfig(algo=algo, model=model, output_dir=str(output_dir),  # type: ignore[arg-type]
                              reward_models=[str(p) for p in reward_model], verifier=verifier,  # type: ignore[arg-type]
                              reward_weights=list(reward_weight) or None, num_generations=num_generations,
                              max_completion_length=max_completion_length, beta=beta, num_train_epochs=epochs,
                              max_steps=max_steps, learning_rate=learning_rate, per_device_train_batch_size=batch_size,
                              lora=lora, system_prompt=system, chat_template=chat_template, seed=seed,
                              resume=resume)
    config.validate()
    if verifier not in (None, "strict", "loose"):
        fail("--verifier must be strict or loose")
    summary = train_rl(items, config)
    _show(summary, f"{algo.upper()}: {output_dir}", {"prompts": "prompts"})
    console.print(f"curves (reward, KL, length): {output_dir / 'curves.png'}")


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
