"""`rlhfkit annotate loop`: label -> retrain -> select for N rounds with people (Label Studio) or a machine
annotator, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annotation.config import ActiveLoopConfig
from annotation.registry import DEFAULT_JUDGE_LM
from rlhfkit.cli.console import console, err_console, fail, row_progress, summary_table

PENDING_EXIT = 3
"""Exit status while people have not labeled a round yet (as `rlhfkit run` waiting for Label Studio)."""


def loop(config: ActiveLoopConfig, *, pool: Path, store: Path, out: Path, annotator: str, project: str,
         wait: float, min_labeled: float, mode: str, judge_lm: str, reward_model: str | None,
         reward_config: Path | None) -> None:
    """Label a random start of POOL, train a reward model, then for each round choose the pairs it is least sure
    of (--strategy), label them and retrain. With --annotator labelstudio people label each round in Label Studio:
    the command pushes the round's pairs and exits with status 3 until they are labeled; rerun it then. Resumes
    where it stopped; no pair is labeled twice. Writes OUT/round-N/{selected.jsonl, rm/, done.json}; the judgments
    go to --store."""
    from annotation.active_loop import run_active_loop
    from annotation.labelstudio.people import LabelsPending
    from reward.config import RewardTrainingConfig
    from rlhfkit.cli.annotate_machine import _read_pairs
    from rlhfkit.core.fields import load

    reward = load(RewardTrainingConfig, reward_config) if reward_config else RewardTrainingConfig()
    judge = _annotator(annotator, project, wait, min_labeled, mode, judge_lm, reward_model, config.seed)
    pairs = _read_pairs(pool)
    try:
        with row_progress(f"active loop: {config.rounds + 1} rounds ({config.strategy})",
                          total=config.rounds + 1) as advance:
            results = run_active_loop(pairs, judge, store, out, config, reward, on_round=lambda _: advance())
    except LabelsPending as exc:
        err_console.print(f"[yellow]waiting for people:[/] {exc}")
        raise typer.Exit(PENDING_EXIT) from None
    for result in results:
        console.print(summary_table(f"round {result.round}", {
            "chosen": result.selected, "labeled": result.labeled, "pairs in the store": result.store_pairs,
            "reward model": result.model}))


def _annotator(name: str, project: str, wait: float, min_labeled: float, mode: str, judge_lm: str,
               reward_model: str | None, seed: int):
    if name != "labelstudio":
        from rlhfkit.cli.annotate_machine import build_annotator

        return build_annotator(name, mode, judge_lm, reward_model)
    from annotation.labelstudio.people import LabelStudioPeople
    from annotation.labelstudio.sync import ensure_project
    from rlhfkit.cli.annotate import connect

    if not 0.0 < min_labeled <= 1.0:
        fail(f"--min-labeled must be in (0, 1], not {min_labeled}")
    client = connect()
    target = project if str(project).isdigit() else ensure_project(client, project)["id"]
    return LabelStudioPeople(client, target, min_labeled=min_labeled, wait=wait, seed=seed)


def register(app: typer.Typer) -> None:
    """Add `loop` to the `rlhfkit annotate` app: options from ActiveLoopConfig, the data as its own arguments."""
    from rlhfkit.cli.config_options import config_command, own

    config_command(app, ActiveLoopConfig, loop, name="loop", help=loop.__doc__, arguments=[
        own("pool", Annotated[Path, typer.Option("--pool", help="Unlabeled pairs to choose from (.jsonl, .parquet "
                                                  "or .csv with prompt, response_a, response_b, metadata).")]),
        own("store", Annotated[Path, typer.Option("--store", "-s", help="Preference store that receives the "
                                                   "judgments (created if missing).")]),
        own("out", Annotated[Path, typer.Option("--out", "-o", help="Folder of the rounds (resume).")]),
        own("annotator", Annotated[str, typer.Option("--annotator", "-a", help="Who labels: labelstudio (people, "
                                                      "in --project) or a machine annotator: verifier, judge or "
                                                      "reward (see `annotate label`).")], "verifier"),
        own("project", Annotated[str, typer.Option("--project", "-p", help="Label Studio project title or id for "
                                                    "--annotator labelstudio (created if missing).")],
             "rlhfkit active loop"),
        own("wait", Annotated[float, typer.Option(help="Seconds to wait for people to label a round before exiting "
                                                   "with status 3 (rerun to go on).")], 0.0),
        own("min_labeled", Annotated[float, typer.Option(help="Share of a round's pairs people must label before "
                                                          "it retrains (1.0: all).")], 1.0),
        own("mode", Annotated[str, typer.Option(help="Verifier mode: strict or loose.")], "strict"),
        own("judge_lm", Annotated[str, typer.Option(help="The judge's LM for --annotator judge.")],
             DEFAULT_JUDGE_LM),
        own("reward_model", Annotated[str | None, typer.Option(help="Reward model folder for --annotator reward "
                                                                "(the annotator, not the model the loop trains).")],
             None),
        own("reward_config", Annotated[Path | None, typer.Option(help="YAML of RewardTrainingConfig for the "
                                                                  "model each round trains (see `rlhfkit reward "
                                                                  "train --show-config`).")], None),
    ])
