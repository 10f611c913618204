"""Reward-model learning curve: held-out accuracy against the number of labeled training pairs.

The same recipe is trained on nested shares of the training prompts (a larger share holds every prompt of a smaller
one: `split_by_prompt` with one seed walks the prompts in one shuffled order) and every model is evaluated on the
same held-out judgments. The curve answers the question a team paying annotators asks: would more labels help?
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from preference.schema import PreferenceRecord
from preference.split import split_by_prompt
from reward.config import RewardTrainingConfig
from rlhfkit.core.atomic import atomic_path, atomic_write_text
from rlhfkit.core.errors import InputError


@dataclasses.dataclass
class CurvePoint:
    share: float  # share of the training prompts' judgments used
    train_judgments: int  # labeled judgments the model was trained on
    decisive_test_pairs: int  # held-out pairs counted by the accuracy
    accuracy: float | None  # held-out pairwise accuracy (None: nothing decisive held out)
    accuracy_ci: list[float | None]  # 95% prompt-grouped bootstrap interval


def learning_curve(train: list[PreferenceRecord], test: list[PreferenceRecord], config: RewardTrainingConfig,
                   shares: Sequence[float], *, n_bootstrap: int = 2000,
                   full: CurvePoint | None = None,
                   on_point: Callable[[CurvePoint], None] | None = None) -> list[CurvePoint]:
    """Train `config`'s recipe on each share of `train` (into `config.output_dir`/share-S) and evaluate on `test`.

    `full` is the point of the model already trained on all of `train` (appended, not retrained). Finished shares
    are not retrained when `config.resume` is set, so an interrupted curve resumes.
    """
    from reward.evaluate import evaluate
    from reward.model import load_reward_model
    from reward.train import train_reward_model

    bad = [share for share in shares if not 0 < share < 1]
    if bad:
        raise InputError(f"learning-curve shares must lie strictly between 0 and 1, got {bad}")
    points = []
    for share in sorted(set(shares)):
        part = split_by_prompt(train, {"part": share, "rest": 1 - share}, seed=config.seed)["part"]
        member = dataclasses.replace(config, output_dir=str(Path(config.output_dir) / f"share-{share:g}"))
        trained = train_reward_model(part, member)
        report = evaluate(load_reward_model(trained.model_dir), test, n_bootstrap=n_bootstrap, seed=config.seed)
        data = report.to_dict()
        point = CurvePoint(share, len(part), data["counts"]["decisive"], data.get("accuracy"),
                           list(data.get("accuracy_ci") or [None, None]))
        points.append(point)
        if on_point:
            on_point(point)
    if full is not None:
        points.append(full)
    return points


def save_curve(points: Sequence[CurvePoint], folder: str | Path) -> dict[str, Path]:
    """Write `curve.json` and `curve.png` in `folder`, atomically."""
    folder = Path(folder)
    json_path, png_path = folder / "curve.json", folder / "curve.png"
    atomic_write_text(json_path, json.dumps(curve_dicts(points), indent=1))
    _plot(points, png_path)
    return {"json": json_path, "png": png_path}


def _plot(points: Sequence[CurvePoint], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    drawn = [p for p in points if p.accuracy is not None]
    xs = [p.train_judgments for p in drawn]
    ys = [p.accuracy for p in drawn]
    low = [p.accuracy - p.accuracy_ci[0] if p.accuracy_ci[0] is not None else 0 for p in drawn]
    high = [p.accuracy_ci[1] - p.accuracy if p.accuracy_ci[1] is not None else 0 for p in drawn]
    ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=4, color="tab:blue", label="held-out accuracy, 95% CI")
    ax.axhline(0.5, linestyle="--", color="grey", linewidth=1, label="chance")
    for point in drawn:
        ax.annotate(f"{point.share:.0%}", (point.train_judgments, point.accuracy), textcoords="offset points",
                    xytext=(6, -12), fontsize=8, color="tab:blue")
    n_test = max((p.decisive_test_pairs for p in drawn), default=0)
    ax.set_title(f"Reward model: accuracy against labels\n(same {n_test} decisive held-out pairs for every point)")
    ax.set_xlabel("labeled training judgments")
    ax.set_ylabel("held-out pairwise accuracy")
    ax.legend(loc="lower right", fontsize=8)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def curve_dicts(points: Sequence[CurvePoint]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(point) for point in points]
