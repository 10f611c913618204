"""Read preference judgments from files: `read_preferences(path, format=None)`.

Formats: `rlhfkit` (own columns, or any columns through a mapping), `hh-rlhf`, `pandalm`, `trl`. Each yields one
`RowResult` per input row, so callers can import the valid rows and quarantine the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from preference.importers import generic, hh_rlhf, pandalm, trl
from preference.importers.base import ImportOptions, RowResult, container_of, read_container
from preference.readers import columns_of
from rlhfkit.core.errors import InputError

READERS = {"rlhfkit": generic.read, "hh-rlhf": hh_rlhf.read, "pandalm": pandalm.read, "trl": trl.read}
FORMATS = tuple(READERS)

__all__ = ["FORMATS", "ImportOptions", "RowResult", "detect_format", "read_preferences"]


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")


def detect_format(path: Path, options: ImportOptions | None = None) -> str:
    """Guess the format from the columns of the first record. Raises ValueError naming what was found, or, when no
    record can be read, the reading problem (not JSON, empty, truncated, ...)."""
    options = options or ImportOptions()
    _check_file(path)
    kind = options.container or container_of(path)
    columns = set(columns_of(path, kind, options.max_line_bytes))
    if {"chosen", "rejected"} <= columns:
        first = next((r.data for r in read_container(path, kind, options) if r.data), {})
        return "hh-rlhf" if str(first.get("chosen", "")).startswith("\n\nHuman:") else "trl"
    if {"response1", "response2"} <= columns and any(pandalm.ANNOTATOR_COLUMN.match(c) for c in columns):
        return "pandalm"
    # Some of rlhfkit's own columns (or a mapping): read as rlhfkit, whose reader names any missing column.
    mapped = {options.mapping.get(field, field) for field in generic.REQUIRED} | {"prompt_messages"}
    if options.mapping or len(mapped & columns) >= 2:
        return "rlhfkit"
    raise InputError(f"{path}: cannot tell the format from its columns ({', '.join(sorted(columns)) or 'none'}); "
                     f"pass --format (one of {', '.join(FORMATS)}) and --map FIELD=COLUMN for your column names")


def read_preferences(path: str | Path, format: str | None = None, options: ImportOptions | None = None
                     ) -> Iterator[RowResult]:
    """Yield one `RowResult` per row of `path`. `format=None` detects it."""
    path = Path(path)
    options = options or ImportOptions()
    _check_file(path)
    fmt = format or detect_format(path, options)
    if fmt not in READERS:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return READERS[fmt](path, options)
