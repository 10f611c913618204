"""Import a file into a preference store: all rows or none (`on_error="fail"`), or the valid rows with the rejected
ones written, with their reasons, to a quarantine file (`on_error="quarantine"`).

Either way the store changes atomically: a crash mid-import leaves it as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from preference.errors import DataError, Issue
from preference.importers import ImportOptions, RowResult, detect_format, read_preferences
from preference.store import PreferenceStore
from rlhfkit.core.atomic import write_jsonl
from rlhfkit.core.errors import InputError

OnError = Literal["fail", "quarantine"]


@dataclasses.dataclass
class ImportReport:
    file: str
    format: str
    rows_read: int = 0
    rows_rejected: int = 0
    records_imported: int = 0
    unchanged: int = 0  # already in the store with the same content: not written again
    superseding: int = 0  # replace an earlier judgment with the same id (an edit, or a repeat in the file)
    errors: list[Issue] = dataclasses.field(default_factory=list)
    warnings: list[Issue] = dataclasses.field(default_factory=list)
    flags: Counter[str] = dataclasses.field(default_factory=Counter)
    quarantine: str | None = None
    # judgments of a pair the same annotator already judged in the store under another source (a copied file?)
    repeated_elsewhere: int = 0
    repeated_sources: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file, "format": self.format, "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected, "records_imported": self.records_imported,
            "unchanged": self.unchanged, "superseding": self.superseding,
            "errors": len(self.errors), "warnings": len(self.warnings), "flags": dict(self.flags),
            "quarantine": self.quarantine, "repeated_elsewhere": self.repeated_elsewhere,
            "repeated_sources": self.repeated_sources,
        }


def scan(path: Path, format: str | None, options: ImportOptions,
         on_row: Callable[[RowResult], None] | None = None) -> tuple[str, list[RowResult]]:
    """Read the whole file (no store involved); used by `validate` and `stats` too."""
    fmt = format or detect_format(path, options)
    results = []
    for result in read_preferences(path, fmt, options):
        results.append(result)
        if on_row:
            on_row(result)
    return fmt, results


def _content(row: dict[str, object]) -> str:
    """What makes a judgment "the same" on re-import: everything but the import time."""
    kept = {key: value for key, value in row.items() if key != "timestamp"}
    return hashlib.sha1(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def import_file(
    path: str | Path,
    store: PreferenceStore,
    format: str | None = None,
    options: ImportOptions | None = None,
    on_error: OnError = "fail",
    quarantine_path: str | Path | None = None,
    on_row: Callable[[RowResult], None] | None = None,
) -> ImportReport:
    """Import `path` into `store`, streaming rows into new shards that become visible only at the end.

    With on_error="fail", any error raises `DataError` listing every problem and nothing is written. A judgment
    already in the store with the same content is not written again, so importing a file twice changes nothing."""
    if on_error not in ("fail", "quarantine"):
        raise InputError(f"on_error must be 'fail' or 'quarantine', not {on_error!r}")
    path = Path(path)
    options = options or ImportOptions()
    fmt = format or detect_format(path, options)
    report = ImportReport(file=str(path), format=fmt)
    rows = store.table().to_pylist() if store.is_store(store.path) else []
    existing = {row["judgment_id"]: _content(row) for row in rows}
    judged: dict[tuple[str, str], set[str]] = {}  # (pair, annotator) -> the sources it was judged under
    for row in rows:
        judged.setdefault((row["pair_id"], row["annotator"]), set()).add(row["source"])
    elsewhere: set[str] = set()
    in_file: set[str] = set()
    rejected: list[RowResult] = []
    with store.writer(note=f"import {path.name} ({fmt})") as writer:
        for result in read_preferences(path, fmt, options):
            if on_row:
                on_row(result)
            report.rows_read += 1
            report.warnings += [issue for issue in result.issues if issue.severity == "warning"]
            if not result.ok:
                report.errors += [issue for issue in result.issues if issue.severity == "error"]
                rejected.append(result)
                continue
            for record in result.records:
                report.flags.update(record.metadata.get("flags", []))
                judgment = record.judgment_id
                if existing.get(judgment) == _content(record.to_row()):
                    report.unchanged += 1
                    continue
                if judgment in existing or judgment in in_file:
                    report.superseding += 1
                else:
                    others = judged.get((record.pair_id, record.annotator), set()) - {record.source}
                    if others:
                        report.repeated_elsewhere += 1
                        elsewhere |= others
                in_file.add(judgment)
                writer.add(record)
        report.rows_rejected = len(rejected)
        if rejected and on_error == "fail":  # raised inside the writer: the new shards are discarded
            raise DataError(report.errors, f"{path}: {len(rejected)} of {report.rows_read} rows have errors; nothing "
                            "was imported (use --on-error quarantine to import the valid rows)")
        if rejected:
            target = Path(quarantine_path) if quarantine_path else default_quarantine_path(store, path)
            write_quarantine(rejected, target)
            report.quarantine = str(target)
    report.records_imported = writer.count
    report.repeated_sources = sorted(elsewhere)
    return report


def default_quarantine_path(store: PreferenceStore, source: Path) -> Path:
    # Unique per import: two imports in the same second must not overwrite each other's rejected rows.
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return store.path / "quarantine" / f"{source.name}.{stamp}-{uuid.uuid4().hex[:6]}.rejected.jsonl"


def write_quarantine(rejected: list[RowResult], target: Path) -> None:
    """Rejected rows, one JSON object per line: where, why, and the original text."""
    write_jsonl(({"file": result.file, "line": result.line,
                  "issues": [issue.as_dict() for issue in result.issues if issue.severity == "error"],
                  "raw": result.raw} for result in rejected), target)
