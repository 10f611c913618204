"""`rlhfkit reward ...`: train reward models with TRL, evaluate them honestly, score pairs fast."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from preference.importers import ImportOptions
from preference.pairs import read_pairs
from reward.config import RewardTrainingConfig
from rlhfkit.cli.config_options import TRAINING_ALIASES, Typer, config_command
from rlhfkit.cli.console import console, fail, summary_table
from rlhfkit.cli.data import load_records
from rlhfkit.core.atomic import atomic_write_text, write_jsonl

app = Typer(help="Train reward models (TRL), evaluate them, score responses.", no_args_is_help=True)
DataArg = Annotated[Path, typer.Argument(help="Preference store or any importable preference file (HH-RLHF, PandaLM, "
                                         "TRL, rlhfkit JSONL/CSV/Parquet).")]


def train(config: RewardTrainingConfig, data: Path) -> None:
    """Train a reward model with TRL's RewardTrainer (strength as margin, ties by policy, nothing silently dropped)."""
    from reward.train import train_reward_model

    records, _ = load_records(data, None, ImportOptions())
    result = train_reward_model(records, config)
    losses = {f"train loss (member {index})" if len(result.metrics) > 1 else "train loss":
              f"{metrics.get('train_loss', float('nan')):.4f}" for index, metrics in enumerate(result.metrics)}
    console.print(summary_table(f"reward model trained: {result.model_dir}", {
        "training pairs": result.data["pairs"],
        **{f"dropped: {key}": count for key, count in sorted(result.data["export"]["dropped"].items())},
        **{f"truncated ({side})": count for side, count in sorted(result.data["truncated_sides"].items())},
        **losses, "curves": Path(config.output_dir) / "curves*.png"}))


config_command(app, RewardTrainingConfig, train, name="train",
               arguments=[inspect.Parameter("data", inspect.Parameter.POSITIONAL_ONLY, annotation=DataArg)],
               aliases=TRAINING_ALIASES)


@app.command("eval")
def eval_cmd(
    model: Annotated[Path, typer.Argument(help="Reward model folder (or an ensemble's model/ folder).")],
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for eval.json and eval.png.")] = Path("runs/eval"),
    fit_temperature: Annotated[bool, typer.Option(help="Fit a calibration temperature on this data (in-sample: use "
                                                  "a validation split, then score the test split).")] = False,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence interval.")] = 1000,
    subsets: Annotated[str, typer.Option(help="Break accuracy down by 'source' or 'annotator'.")] = "source",
) -> None:
    """Pairwise accuracy (ties apart), bootstrap CI, calibration, length bias; JSON plus a PNG."""
    from reward.evaluate import evaluate
    from reward.model import load_reward_model

    if subsets not in ("source", "annotator"):
        fail("--subsets must be 'source' or 'annotator'")
    scorer = load_reward_model(model)
    records, _ = load_records(data, None, ImportOptions())
    report = evaluate(scorer, records, n_bootstrap=n_bootstrap, fit_temperature=fit_temperature, subsets=subsets,
                      progress=True)
    out.mkdir(parents=True, exist_ok=True)
    result = report.to_dict()
    atomic_write_text(out / "eval.json", json.dumps(result, indent=1))
    report.plot(out / "eval.png")
    table = Table(title=f"{model} on {data}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("decisive pairs", str(result["counts"]["decisive"]))
    table.add_row("accuracy", f"{result['accuracy']:.3f}")
    if result.get("accuracy_ci"):
        low, high = result["accuracy_ci"]
        table.add_row("95% CI (bootstrap by prompt)", f"{low:.3f} - {high:.3f}")
    table.add_row("ties (excluded)", str(result["counts"]["ties"]))
    calibration = result["calibration"]
    table.add_row("ECE", f"{calibration['ece']:.3f}")
    if calibration.get("fitted_temperature"):
        table.add_row("fitted temperature (in-sample)", f"{calibration['fitted_temperature']:.3f}")
    bias = result["length_bias"]
    table.add_row("model prefers the longer answer", f"{bias['model_prefers_longer']:.3f}")
    table.add_row("humans prefer the longer answer", f"{bias['human_prefers_longer']:.3f}")
    console.print(table)
    from rlhfkit.models.card import add_evaluation
    from rlhfkit.models.registry import resolve_model

    card = add_evaluation(resolve_model(str(model)), {
        "data": str(data), "n": result["counts"]["decisive"], "accuracy": result["accuracy"],
        "ci_low": (result.get("accuracy_ci") or [None, None])[0],
        "ci_high": (result.get("accuracy_ci") or [None, None])[1], "ece": calibration["ece"]})
    console.print(f"written: {out / 'eval.json'}, {out / 'eval.png'}" + (f"; model card {card}" if card else ""))


@app.command()
def score(
    model: Annotated[Path, typer.Argument(help="Reward model folder (or an ensemble's model/ folder).")],
    pairs: Annotated[Path, typer.Argument(help="Pairs file (prompt, response_a, response_b): both sides are scored.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL with r_a, r_b and P(a > b) per pair.")],
    batch_size: Annotated[int | None, typer.Option(help="Sequences per forward pass (default: the model's).")
                          ] = None,
) -> None:
    """Score both responses of every pair (length-sorted batches) and write rewards and P(a > b)."""
    from reward.model import load_reward_model
    from reward.pairs import score_pairs

    scorer = load_reward_model(model)
    chosen = read_pairs(pairs)
    if batch_size is not None:
        for member in getattr(scorer, "members", [scorer]):
            member.batch_size = batch_size
    r_a, r_b, p_a = score_pairs(scorer, [p.prompt for p in chosen], [p.response_a for p in chosen],
                                [p.response_b for p in chosen])
    rows = [{"pair_id": pair.pair_id, "r_a": a, "r_b": b, "p_a": p, **dataclasses.asdict(pair)}
            for pair, a, b, p in zip(chosen, r_a, r_b, p_a)]
    write_jsonl(rows, out)
    console.print(f"scored {len(rows)} pairs with {model}: {out}")
