"""PandaLM-style pairs: instruction (+ optional input), response1, response2, and one column per annotator
(`annotator1`, `annotator2`, ...) with 1 = response1 better, 2 = response2 better, 0 = tie.

Each annotator column becomes one judgment, annotator id "pandalm:annotatorN".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preference.errors import Issue
from preference.importers.base import ImportOptions, RowResult, convert_rows
from preference.schema import PreferenceRecord
from preference.validation import RowContext, build_record

ANNOTATOR_COLUMN = re.compile(r"^annotator\d+$")
LABELS = {"1": "a", "2": "b", "0": "tie"}
METADATA_COLUMNS = ("idx", "motivation_app", "cmp_key")


def prompt_of(row: dict[str, Any]) -> Any:
    instruction, extra = row.get("instruction"), row.get("input")
    if isinstance(instruction, str) and isinstance(extra, str) and extra.strip():
        return f"{instruction}\n\n{extra}"
    return instruction


def response_text(value: Any, ctx: RowContext, field: str, issues: list[Issue]) -> Any:
    """PandaLM's file holds a few model outputs "True" as JSON booleans; read JSON scalars as the text shown."""
    if isinstance(value, bool | int | float):
        text = str(value)
        issues.append(Issue(ctx.file, ctx.line, field, f"is a JSON {type(value).__name__}; read as the text {text!r}",
                            "warning"))
        return text
    return value


def _label(raw: Any) -> str | None:
    """1 / 2 / 0 as a number or text; 1.0 counts as 1 (a CSV or Parquet column with gaps is read as floats)."""
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    return LABELS.get(str(raw)) if isinstance(raw, int | str) and not isinstance(raw, bool) else None


def convert(row: dict[str, Any], ctx: RowContext, options: ImportOptions) -> tuple[list[PreferenceRecord], list[Issue]]:
    columns = sorted((c for c in row if ANNOTATOR_COLUMN.match(c)), key=lambda c: int(c[len("annotator"):]))
    if not columns:
        return [], [Issue(ctx.file, ctx.line, "annotator1", "no annotatorN columns in this row")]
    ctx.field_names = {"prompt": "instruction", "response_a": "response1", "response_b": "response2"}
    metadata = {key: row[key] for key in METADATA_COLUMNS if key in row}
    records: list[PreferenceRecord] = []
    issues: list[Issue] = []
    response_a = response_text(row.get("response1"), ctx, "response1", issues)
    response_b = response_text(row.get("response2"), ctx, "response2", issues)
    for column in columns:
        raw = row[column]
        label = _label(raw)
        if label is None:
            issues.append(Issue(ctx.file, ctx.line, column, f"unknown label {raw!r}; expected 1, 2 or 0 (tie)"))
            continue
        ctx.field_names["label"] = column
        record, more = build_record(
            {"prompt": prompt_of(row), "response_a": response_a, "response_b": response_b,
             "label": label, "annotator": f"pandalm:{column}", "metadata": metadata,
             "item": row.get("idx", ctx.line)},
            ctx,
        )
        # Prompt/response problems repeat for every annotator column; report them once.
        issues += [issue for issue in more if issue not in issues]
        if record:
            records.append(record)
    if any(issue.severity == "error" for issue in issues):
        return [], issues
    return records, issues


def read(path: Path, options: ImportOptions) -> Iterator[RowResult]:
    return convert_rows(path, options, convert, default_degenerate="flag")
