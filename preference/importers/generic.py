"""Generic tabular preferences (JSONL / JSON / CSV / Parquet) with a column mapping; rlhfkit's own format by default.

rlhfkit's own columns: prompt (text) or prompt_messages (JSON chat), response_a, response_b, label, and optional
strength, annotator, source, timestamp, item, metadata. Anything else maps in with `ImportOptions.mapping`.

CSV and Parquet cells are text: there a `prompt` holding a JSON chat (a non-empty list of {"role", "content"}
objects) is read as chat messages and any other prompt stays text, and `metadata` must be a JSON object.
`prompt_messages` is JSON chat in every container.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preference.errors import Issue
from preference.importers.base import ImportOptions, RowResult, convert_rows
from preference.schema import PreferenceRecord
from preference.validation import RowContext, build_record

FIELDS = ("prompt", "response_a", "response_b", "label", "strength", "annotator", "source", "timestamp", "item",
          "metadata")
REQUIRED = ("prompt", "response_a", "response_b", "label")


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(message, dict) and "role" in message and "content" in message for message in value)


def text_or_chat(value: Any) -> Any:
    """A CSV/Parquet prompt cell: chat messages if it holds a JSON chat, else the text as written ("[INST] Hi",
    "[3, 1, 2]" and '{"name": "x"}' are text prompts too)."""
    if isinstance(value, str) and value.startswith("["):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if _is_chat(decoded):
            return decoded
    return value


def _json_cell(value: Any, ctx: RowContext, field: str, expected: type, issues: list[Issue]) -> Any:
    """A string cell that must hold JSON of type `expected`; on failure the issue is added and None returned."""
    if not isinstance(value, str):
        return value
    what = "a JSON list of chat messages" if expected is list else "a JSON object"
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        issues.append(Issue(ctx.file, ctx.line, ctx.name(field), f"must be {what}; not valid JSON ({exc.msg})"))
        return None
    if not isinstance(decoded, expected):
        issues.append(Issue(ctx.file, ctx.line, ctx.name(field), f"must be {what}, not {type(decoded).__name__}"))
        return None
    return decoded


def convert(row: dict[str, Any], ctx: RowContext, options: ImportOptions) -> tuple[list[PreferenceRecord], list[Issue]]:
    mapping = {field: options.mapping.get(field, field) for field in FIELDS}
    ctx.field_names = mapping
    issues: list[Issue] = []
    values = {field: row.get(column) for field, column in mapping.items()}
    # JSON containers hold chat prompts and metadata as JSON values already, so their strings are never decoded
    # (a text prompt may well start with "["). CSV and Parquet cells are text: there, JSON is decoded where expected.
    tabular = ctx.container in ("csv", "parquet")
    if values["prompt"] is None and "prompt" not in options.mapping and row.get("prompt_messages") is not None:
        ctx.field_names = {**mapping, "prompt": "prompt_messages"}  # a row written by rlhfkit's own store
        values["prompt"] = _json_cell(row["prompt_messages"], ctx, "prompt", list, issues)
    elif tabular:
        values["prompt"] = text_or_chat(values["prompt"])
    if tabular:
        values["metadata"] = _json_cell(values["metadata"], ctx, "metadata", dict, issues)
    values["label"] = _label(values["label"], options)
    record, more = build_record(values, ctx)
    reported = {issue.field for issue in issues}  # a cell that is not valid JSON is not reported twice
    return ([record] if record and not issues else []), issues + [i for i in more if i.field not in reported]


def _label(label: Any, options: ImportOptions) -> str | None:
    """The label as text, through the label map. Numeric labels (1, 2, 0) go through the map as their digits; a float
    column (pandas stores integers with nulls as floats) gives 1.0, which means 1."""
    if label is None:
        return None
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    label = label if isinstance(label, str) else str(label)
    return options.label_map.get(label, label)


def read(path: Path, options: ImportOptions) -> Iterator[RowResult]:
    required = tuple(options.mapping.get(field, field) for field in REQUIRED if field != "prompt")
    return convert_rows(path, options, convert, default_degenerate="error", required=required)
