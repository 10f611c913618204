"""Read rows from files with exact line numbers, and never let one bad row take the others down.

Each reader yields `RawRow(line, data, issue)`: either a parsed row (`data`) or the problem that stopped it (`issue`).
Bad bytes, over-long lines, a truncated gzip stream or a malformed JSON value become issues at their line; rows
before (and where possible after) them are still read.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.parquet as pq

from preference.errors import Issue

# Lines longer than this are reported and skipped rather than loaded: a 50 MB line is a broken export, not a pair.
DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RawRow:
    line: int | None
    data: dict[str, Any] | None
    issue: Issue | None = None
    raw: str | None = None  # the original text, kept so that quarantine files hold what was rejected


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def open_binary(path: Path) -> BinaryIO:
    """Open a file, transparently decompressing gzip (detected from the magic bytes, not the name)."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # type: ignore[return-value]


def _read_lines(handle: BinaryIO, name: str, max_bytes: int) -> Iterator[tuple[int, bytes | None, Issue | None]]:
    """Yield (line number, bytes without newline, issue) with memory bounded by `max_bytes` per line."""
    number = 0
    while True:
        number += 1
        try:
            chunk = handle.readline(max_bytes + 1)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            yield number, None, Issue(name, number, None, f"file is truncated or corrupt here ({exc}); "
                                      f"the {number - 1} line(s) before were read")
            return
        if not chunk:
            return
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            size = len(chunk)
            # Skip the rest of the over-long line without holding it in memory.
            try:
                while chunk and not chunk.endswith(b"\n"):
                    chunk = handle.readline(_CHUNK)
                    size += len(chunk)
            except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
                pass
            yield number, None, Issue(name, number, None, f"line is {size / 1e6:.1f} MB, over the "
                                      f"{max_bytes / 1e6:.1f} MB limit; skipped")
            continue
        yield number, chunk.rstrip(b"\r\n"), None


def _decode(raw: bytes, name: str, number: int) -> tuple[str | None, Issue | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Issue(name, number, None, f"invalid UTF-8 at byte {exc.start} of the line")


def read_jsonl(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[RawRow]:
    """JSON Lines, plain or gzip. Blank lines are skipped."""
    name = str(path)
    with open_binary(path) as handle:
        for number, raw, issue in _read_lines(handle, name, max_line_bytes):
            if issue is not None:
                yield RawRow(number, None, issue)
                continue
            assert raw is not None
            text, issue = _decode(raw, name, number)
            if issue is not None:
                yield RawRow(number, None, issue, raw.decode("utf-8", "replace"))
                continue
            assert text is not None
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawRow(number, None, Issue(name, number, None, f"not valid JSON: {exc.msg} at column "
                                                 f"{exc.colno}"), text)
                continue
            if not isinstance(value, dict):
                yield RawRow(number, None, Issue(name, number, None, f"expected a JSON object, got "
                                                 f"{type(value).__name__}"), text)
                continue
            yield RawRow(number, value, None, text)


def read_json_array(path: Path) -> Iterator[RawRow]:
    """A JSON file holding an array of objects (PandaLM style); each element is reported at its starting line."""
    name = str(path)
    with open_binary(path) as handle:
        try:
            data = handle.read()
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            yield RawRow(None, None, Issue(name, None, None, f"file is truncated or corrupt ({exc})"))
            return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield RawRow(line, None, Issue(name, line, None, "invalid UTF-8 in this line; the file cannot be read"))
        return
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        yield RawRow(1, None, Issue(name, 1, None, "expected a JSON array of objects"))
        return
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while pos < len(text):
        line = text.count("\n", 0, pos) + 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield RawRow(exc.lineno, None, Issue(name, exc.lineno, None, f"not valid JSON: {exc.msg}; "
                                                 "the rest of the file cannot be read"))
            return
        if isinstance(value, dict):
            yield RawRow(line, value, None, text[pos:end])
        else:
            yield RawRow(line, None, Issue(name, line, None, f"expected a JSON object, got {type(value).__name__}"))
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            line = text.count("\n", 0, pos) + 1
            yield RawRow(line, None, Issue(name, line, None, "expected ',' or ']' in the JSON array; "
                                           "the file is truncated or malformed"))
            return


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def read_csv(path: Path, required: tuple[str, ...] = ()) -> Iterator[RawRow]:
    """CSV with a header row. Reports missing required columns at line 1, then each row at its own line."""
    name = str(path)
    with open_binary(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        reader = csv.DictReader(text)
        try:
            header = reader.fieldnames or []
        except UnicodeDecodeError as exc:
            yield RawRow(1, None, Issue(name, 1, None, f"invalid UTF-8 in the header ({exc.reason})"))
            return
        missing = [column for column in required if column not in header]
        for column in missing:
            yield RawRow(1, None, Issue(name, 1, column, f"column {column!r} is missing from the header "
                                        f"(found: {', '.join(header) or 'none'})"))
        if missing:
            return
        line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                yield RawRow(line + 1, None, Issue(name, line + 1, None, "invalid UTF-8; the rest of the file "
                                                   "cannot be read"))
                return
            except (csv.Error, EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                yield RawRow(line + 1, None, Issue(name, line + 1, None, f"unreadable CSV: {exc}"))
                return
            start, line = line + 1, reader.line_num
            if None in row:
                yield RawRow(start, None, Issue(name, start, None, "more values than header columns"))
                continue
            yield RawRow(start, {k: (v if v != "" else None) for k, v in row.items()}, None,
                         json.dumps(row, ensure_ascii=False))


def read_parquet(path: Path, batch_rows: int = 1024) -> Iterator[RawRow]:
    """Parquet, streamed in record batches; `line` is the 1-based row number."""
    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        yield RawRow(None, None, Issue(name, None, None, f"not a readable Parquet file ({exc})"))
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            number += 1
            yield RawRow(number, row, None)


def columns_of(path: Path, kind: str) -> list[str]:
    """Column names of a tabular file (first record for JSON kinds), for format detection and error messages."""
    if kind == "parquet":
        return list(pq.ParquetFile(path).schema_arrow.names)
    if kind == "csv":
        with open_binary(path) as binary:
            return next(csv.reader(io.TextIOWrapper(binary, encoding="utf-8", newline="")), [])
    rows = read_jsonl(path) if kind == "jsonl" else read_json_array(path)
    for row in rows:
        if row.data is not None:
            return list(row.data)
    return []
