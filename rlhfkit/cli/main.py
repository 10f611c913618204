"""Entry point of the `rlhfkit` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.logging import RichHandler
from typer.core import TyperGroup

from annotation.labelstudio.client import LabelStudioError
from preference.errors import DataError
from preference.store import StoreError
from reward.ifeval import VerifierSetupError
from rlhfkit import __version__
from rlhfkit.cli import annotate, data, instructions, models, policy, reward
from rlhfkit.cli.console import console, err_console, fail
from rlhfkit.core.errors import TrainingDiverged

# Failures a user can cause (bad files, a missing server, a full disk): one clear line and exit 1, no traceback.
# `--verbose` shows the traceback too.
EXPECTED_ERRORS = (DataError, StoreError, LabelStudioError, OSError, EOFError, ValueError, TrainingDiverged,
                   VerifierSetupError)
_verbose = False


class FriendlyErrors(TyperGroup):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EXPECTED_ERRORS as exc:
            if _verbose:
                raise
            fail(str(exc) or type(exc).__name__)


app = typer.Typer(cls=FriendlyErrors, help="rlhfkit: preference data, annotation, reward models and policy updates.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(data.app, name="data")
app.add_typer(annotate.app, name="annotate")
app.add_typer(reward.app, name="reward")
app.add_typer(policy.app, name="policy")
app.add_typer(instructions.app, name="instructions")
app.add_typer(models.app, name="models")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs and tracebacks.")] = False
         ) -> None:
    global _verbose
    _verbose = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])


@app.command()
def version() -> None:
    """Print the rlhfkit version."""
    console.print(__version__)


@app.command()
def run(
    workdir: Annotated[Path, typer.Option(help="Folder for every stage's outputs; a rerun resumes.")] = Path(
        "runs/quickstart"),
    prompts: Annotated[int, typer.Option(help="Number of generated prompts (1-120).")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the generated sample and the split.")] = 0,
    restart: Annotated[bool, typer.Option(help="Delete the work folder's earlier run and start over.")] = False,
) -> None:
    """Run the main job on the embedded defaults (today: the preference data path and the bundled models)."""
    from rlhfkit.pipeline.quickstart import run_quickstart

    try:
        summary = run_quickstart(workdir, n_prompts=prompts, seed=seed, restart=restart)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    console.print(summary)
