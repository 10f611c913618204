"""Entry point of the `rlhfkit` command."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from rlhfkit import __version__
from rlhfkit.cli import annotate, data, instructions, models, policy, reward
from rlhfkit.cli.console import console, err_console, fail
from rlhfkit.core.errors import RlhfkitError

_verbose = False


def expected(exc: BaseException) -> bool:
    """A failure the user can fix, printed as one line: rlhfkit's own errors, an OS error on a path (a missing or
    unreadable file, a full disk), and the end of input at a prompt. Anything else is a bug: its traceback shows."""
    if isinstance(exc, RlhfkitError | EOFError):
        return True
    return isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or exc.filename is not None)


def error_message(exc: BaseException) -> str:
    """The one line a user sees for an expected failure."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"the disk is full ({exc.filename or 'writing output'}): free some space and run the same command "
                "again; finished work is kept and interrupted work resumes")
    return str(exc) or type(exc).__name__


class FriendlyErrors(TyperGroup):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            if _verbose:
                raise
            err_console.print("[yellow]interrupted:[/] finished work is kept; rerun the same command to resume")
            raise SystemExit(130) from None
        except Exception as exc:  # `--verbose` shows the traceback of an expected failure too
            if _verbose or not expected(exc):
                raise
            fail(error_message(exc))


app = typer.Typer(cls=FriendlyErrors, help="rlhfkit: preference data, annotation, reward models and policy updates.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(data.app, name="data")
app.add_typer(annotate.app, name="annotate")
app.add_typer(reward.app, name="reward")
app.add_typer(policy.app, name="policy")
app.add_typer(instructions.app, name="instructions")
app.add_typer(models.app, name="models")


def _print_version(value: bool) -> None:
    if value:
        console.print(f"rlhfkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs and tracebacks.")] = False,
         version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    global _verbose
    _verbose = verbose
    if not verbose:
        quiet_libraries()
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)])


def quiet_libraries() -> None:
    """Hide what the libraries print on every run and a user cannot act on (`-v` shows it): deprecation and
    future warnings, torch's pin_memory note on CPUs, transformers' info and load reports (a reward head that is
    "MISSING" from a backbone is new by design), and the weight-loading bars. Errors and rlhfkit's own progress
    bars and logs stay. Environment settings only: nothing heavy is imported here."""
    import os
    import warnings

    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=".*'pin_memory' argument is set as true but no accelerator.*")
    for name, value in (("TRANSFORMERS_VERBOSITY", "error"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                        ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(name, value)
    for noisy in ("httpx", "urllib3", "accelerate", "datasets", "torch.distributed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def version() -> None:
    """Print the rlhfkit version."""
    console.print(__version__)


@app.command()
def run(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see --show-config); default: "
                                                "the quick start on the bundled models.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Work folder (overrides the config's workdir); a rerun "
                                                 "resumes there.")] = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="Rerun from this stage on: prompts, generate, "
                                                   "label, reward, update, evaluate, dspy, instructions, "
                                                   "report.")] = None,
    annotator: Annotated[str | None, typer.Option(help="Who labels (overrides label.annotator): verifier, "
                                                  "labelstudio, reward, judge or file.")] = None,
    restart: Annotated[bool, typer.Option(help="Delete the work folder's earlier run and start over.")] = False,
    show_config: Annotated[bool, typer.Option(help="Print the default config, every field documented, and "
                                              "exit.")] = False,
) -> None:
    """The main job: prompts -> candidates -> labels -> reward model -> policy update -> DSPy scores -> instruction
    search -> report (HTML + metrics.json). A rerun skips finished stages and resumes an interrupted one."""
    from rlhfkit.pipeline.config import ConfigError, default_yaml, load_config
    from rlhfkit.pipeline.labelstudio import LabelingPending
    from rlhfkit.pipeline.runner import run_pipeline

    if show_config:
        console.print(default_yaml(), markup=False, highlight=False, soft_wrap=True)
        return
    overrides = {key: value for key, value in (("workdir", str(workdir) if workdir else None),
                                               ("label.annotator", annotator)) if value is not None}
    try:
        settings = load_config(config, overrides)
    except ConfigError as exc:
        fail(str(exc))
    try:
        manifest = run_pipeline(settings, base=config.parent if config else None, from_stage=from_stage,
                                restart=restart, console=console)
    except LabelingPending as exc:
        err_console.print(f"[yellow]labeling continues:[/] {exc}", soft_wrap=True)
        raise typer.Exit(3) from None
    work = Path(settings.workdir)
    table = Table(title=f"rlhfkit run: {work}")
    for column in ("stage", "seconds", "headline"):
        table.add_column(column, overflow="fold")
    for name, entry in manifest["stages"].items():
        table.add_row(name, f"{entry['seconds']:.1f}", escape(_headline(entry["result"])))
    table.caption = f"report: {work / 'report.html'}  ·  metrics: {work / 'metrics.json'}"
    console.print(table)
    from rlhfkit.pipeline.headline import headlines

    for line in headlines(manifest["stages"]):
        mark = "[green]✓[/]" if line["significant"] else "[yellow]·[/]"
        console.print(f"{mark} {escape(line['text'])}", soft_wrap=True)


def _headline(result: dict) -> str:
    parts = []
    for key, value in result.items():
        if isinstance(value, (dict, list)) or value is None:
            continue
        parts.append(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}")
    text = ", ".join(parts)
    return text if len(text) <= 160 else text[:157] + "..."
