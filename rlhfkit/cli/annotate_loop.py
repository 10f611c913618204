"""`rlhfkit annotate loop`: label -> retrain -> select for N rounds with a machine annotator, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annotation.config import ActiveLoopConfig
from annotation.registry import DEFAULT_JUDGE_LM
from rlhfkit.cli.console import console, row_progress, summary_table


def loop(config: ActiveLoopConfig, *, pool: Path, store: Path, out: Path, annotator: str, mode: str, judge_lm: str,
         reward_model: str | None, reward_config: Path | None) -> None:
    """Label a random start of POOL, train a reward model, then for each round choose the pairs it is least sure
    of (--strategy), label them and retrain. Resumes where it stopped; no pair is labeled twice. Writes
    OUT/round-N/{selected.jsonl, rm/, done.json}; the judgments go to --store."""
    from annotation.active_loop import run_active_loop
    from reward.config import RewardTrainingConfig
    from rlhfkit.cli.annotate_machine import _read_pairs, build_annotator
    from rlhfkit.core.fields import load

    reward = load(RewardTrainingConfig, reward_config) if reward_config else RewardTrainingConfig()
    judge = build_annotator(annotator, mode, judge_lm, reward_model)
    pairs = _read_pairs(pool)
    with row_progress(f"active loop: {config.rounds + 1} rounds ({config.strategy})",
                      total=config.rounds + 1) as advance:
        results = run_active_loop(pairs, judge, store, out, config, reward, on_round=lambda _: advance())
    for result in results:
        console.print(summary_table(f"round {result.round}", {
            "chosen": result.selected, "labeled": result.labeled, "pairs in the store": result.store_pairs,
            "reward model": result.model}))



def register(app: typer.Typer) -> None:
    """Add `loop` to the `rlhfkit annotate` app: options from ActiveLoopConfig, the data as its own arguments."""
    from rlhfkit.cli.config_options import config_command, own

    config_command(app, ActiveLoopConfig, loop, name="loop", help=loop.__doc__, arguments=[
        own("pool", Annotated[Path, typer.Option("--pool", help="Unlabeled pairs to choose from (.jsonl, .parquet "
                                                  "or .csv with prompt, response_a, response_b, metadata).")]),
        own("store", Annotated[Path, typer.Option("--store", "-s", help="Preference store that receives the "
                                                   "judgments (created if missing).")]),
        own("out", Annotated[Path, typer.Option("--out", "-o", help="Folder of the rounds (resume).")]),
        own("annotator", Annotated[str, typer.Option("--annotator", "-a", help="Machine annotator: verifier, "
                                                      "judge or reward (see `annotate label`).")], "verifier"),
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
