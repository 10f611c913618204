"""Entry point of the `rlhfkit` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from rlhfkit import __version__
from rlhfkit.cli import data, models
from rlhfkit.cli.console import console, err_console, fail

app = typer.Typer(help="rlhfkit: preference data, annotation, reward models and policy updates.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False) -> None:
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
    prompts: Annotated[int, typer.Option(help="Number of generated prompts.")] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the generated sample and the split.")] = 0,
) -> None:
    """Run the main job on the embedded defaults (today: the preference data path and the bundled models)."""
    from rlhfkit.pipeline.quickstart import run_quickstart

    try:
        summary = run_quickstart(workdir, n_prompts=prompts, seed=seed)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    console.print(summary)
