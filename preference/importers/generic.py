"""Generic tabular preferences (JSONL / JSON / CSV / Parquet) with a column mapping; rlhfkit's own format by default.

rlhfkit's own columns: prompt (text) or prompt_messages (JSON chat), response_a, response_b, label, and optional
strength, annotator, source, timestamp, item, metadata. Anything else maps in with `ImportOptions.mapping`.
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


def _maybe_json(value: Any, ctx: RowContext, field: str, issues: list[Issue]) -> Any:
    """CSV and Parquet hold chat prompts and metadata as JSON strings; decode them."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            issues.append(Issue(ctx.file, ctx.line, ctx.name(field), f"looks like JSON but does not parse: {exc.msg}"))
    return value


def convert(row: dict[str, Any], ctx: RowContext, options: ImportOptions) -> tuple[list[PreferenceRecord], list[Issue]]:
    mapping = {field: options.mapping.get(field, field) for field in FIELDS}
    ctx.field_names = mapping
    issues: list[Issue] = []
    values = {field: row.get(column) for field, column in mapping.items()}
    if values["prompt"] is None and "prompt" not in options.mapping and row.get("prompt_messages"):
        values["prompt"] = row["prompt_messages"]  # a row written by rlhfkit's own store
        ctx.field_names = {**mapping, "prompt": "prompt_messages"}
    values["prompt"] = _maybe_json(values["prompt"], ctx, "prompt", issues)
    values["metadata"] = _maybe_json(values["metadata"], ctx, "metadata", issues)
    label = values["label"]
    if label is not None and not isinstance(label, str):
        label = str(label)  # numeric labels (1, 2, 0) go through the label map
    values["label"] = options.label_map.get(label, label) if label is not None else None
    record, more = build_record(values, ctx)
    return ([record] if record else []), issues + more


def read(path: Path, options: ImportOptions) -> Iterator[RowResult]:
    required = tuple(options.mapping.get(field, field) for field in REQUIRED if field != "prompt")
    return convert_rows(path, options, convert, default_degenerate="error", required=required)
