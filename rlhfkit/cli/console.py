"""Shared Rich consoles, error exit and progress display for the command line."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from preference.errors import Issue

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a clear error (no traceback) and exit non-zero."""
    # soft_wrap: an error stays one unbroken line in logs and pipes (Rich would cut it at 80 columns there).
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def issue_table(issues: list[Issue], title: str, limit: int | None = None) -> Table:
    """Problems in input data, one row each: file:line, field, message (printed as text, never as markup)."""
    table = Table(title=title)
    for column in ("where", "field", "problem"):
        table.add_column(column, overflow="fold")
    for issue in issues[:limit]:
        where = issue.file if issue.line is None else f"{Path(issue.file).name}:{issue.line}"
        table.add_row(escape(where), escape(issue.field or ""), escape(issue.message))
    return table


def summary_table(title: str, rows: dict[str, Any], value_header: str = "value") -> Table:
    """The two-column report every command prints: what, and how many (both printed as text, never as markup)."""
    table = Table(title=escape(title))
    table.add_column("what")
    table.add_column(value_header, justify="right")
    for key, value in rows.items():
        table.add_row(escape(str(key)), escape(str(value)))
    return table


@contextlib.contextmanager
def row_progress(description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
    """A progress display for row-by-row work; yields `advance()`. Silent when output is not a terminal."""
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
