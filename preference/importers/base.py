"""What every importer shares: options, the per-row result, and the container readers (jsonl/json/csv/parquet)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from preference.errors import Issue
from preference.readers import DEFAULT_MAX_LINE_BYTES, RawRow, read_csv, read_json_array, read_jsonl, read_parquet
from preference.schema import PreferenceRecord
from preference.validation import DegeneratePolicy, RowContext
from rlhfkit.core.errors import InputError

CONTAINERS = ("jsonl", "json", "csv", "parquet")


DEFAULT_ANNOTATOR = "unknown"
"""The annotator id of judgments whose row names none and whose import gives no `annotator`."""


@dataclasses.dataclass
class ImportOptions:
    """Options of one import. Every field has a default, so `ImportOptions()` reads rlhfkit's own JSONL."""

    # rlhfkit field -> column in the file, e.g. {"prompt": "question", "response_a": "answer1"}.
    mapping: dict[str, str] = dataclasses.field(default_factory=dict)
    # value in the file's label column -> rlhfkit label, e.g. {"1": "a", "2": "b", "0": "tie"}.
    label_map: dict[str, str] = dataclasses.field(default_factory=dict)
    # used where a row has no annotator / source column (None: DEFAULT_ANNOTATOR / the file name)
    annotator: str | None = None
    source: str | None = None
    # what to do with empty or identical responses ("error" or "flag"); None means the format's default
    degenerate: DegeneratePolicy | None = None
    # container kind; None means detect from the file name
    container: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES


@dataclasses.dataclass
class RowResult:
    """The outcome of one input row: zero or more records (PandaLM rows hold several judgments) and the issues."""

    file: str
    line: int | None
    records: list[PreferenceRecord]
    issues: list[Issue]
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return not any(issue.severity == "error" for issue in self.issues)


RowConverter = Callable[[dict[str, Any], RowContext, ImportOptions], tuple[list[PreferenceRecord], list[Issue]]]


def container_of(path: Path) -> str:
    """The container kind from the file name (.gz stripped); raises ValueError for an unknown extension."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    ext = suffixes[-1].lstrip(".") if suffixes else ""
    kind = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "json", "csv": "csv", "parquet": "parquet"}.get(ext)
    if kind is None:
        raise InputError(f"{path}: cannot tell the file type from its name; expected .jsonl, .json, .csv or .parquet "
                         "(optionally .gz)")
    return kind


def read_container(path: Path, kind: str, options: ImportOptions, required: tuple[str, ...] = ()) -> Iterator[RawRow]:
    if kind == "jsonl":
        return read_jsonl(path, options.max_line_bytes)
    if kind == "json":
        return read_json_array(path)
    if kind == "csv":
        return read_csv(path, required, options.max_line_bytes)
    if kind == "parquet":
        return read_parquet(path)
    raise InputError(f"unknown container {kind!r}; expected one of {CONTAINERS}")


def convert_rows(
    path: Path,
    options: ImportOptions,
    converter: RowConverter,
    default_degenerate: DegeneratePolicy,
    required: tuple[str, ...] = (),
) -> Iterator[RowResult]:
    """Read `path` and turn each raw row into a `RowResult` with `converter`."""
    kind = options.container or container_of(path)
    name = str(path)
    degenerate = options.degenerate or default_degenerate
    source = options.source or path.name
    said = options.annotator is not None  # the default annotator is named once per file, at its first use
    for raw in read_container(path, kind, options, required):
        if raw.issue is not None or raw.data is None:
            yield RowResult(name, raw.line, [], [raw.issue] if raw.issue else [], raw.raw)
            continue
        ctx = RowContext(file=name, line=raw.line, default_annotator=options.annotator or DEFAULT_ANNOTATOR,
                         default_source=source, degenerate=degenerate, container=kind)
        records, issues = converter(raw.data, ctx, options)
        if not said and any(record.annotator == DEFAULT_ANNOTATOR for record in records):
            said = True
            issues = [*issues, Issue(name, raw.line, "annotator", f"not given: recorded as {DEFAULT_ANNOTATOR!r} "
                                     "here and in every later row without one (--annotator NAME names them)",
                                     "warning")]
        yield RowResult(name, raw.line, records, issues, raw.raw)
