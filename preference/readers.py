"""Read rows from files with exact line numbers, and never let one bad row take the others down.

Each reader yields `RawRow(line, data, issue)`: either a parsed row (`data`) or the problem that stopped it (`issue`).
Bad bytes, over-long lines or values, a truncated gzip stream, a malformed JSON value or a damaged Parquet row group
become issues at their line; rows before (and where possible after) them are still read. A UTF-8 byte order mark is
accepted at the start of any text file.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.parquet as pq

from preference.errors import Issue
from rlhfkit.core.errors import InputError

MIB = 1024 * 1024
# Lines longer than this are reported and skipped rather than loaded: a 50 MiB line is a broken export, not a pair.
DEFAULT_MAX_LINE_BYTES = 8 * MIB
_CHUNK = MIB
# What a damaged or cut gzip stream raises while being read.
_STREAM_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, OSError)


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
        except _STREAM_ERRORS as exc:
            yield number, None, Issue(name, number, None, f"file is truncated or corrupt here ({exc}); "
                                      f"the {number - 1} line(s) before were read")
            return
        if not chunk:
            return
        if number == 1:
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            size = len(chunk)
            # Skip the rest of the over-long line without holding it in memory.
            try:
                while chunk and not chunk.endswith(b"\n"):
                    chunk = handle.readline(_CHUNK)
                    size += len(chunk)
            except _STREAM_ERRORS:
                pass
            yield number, None, Issue(name, number, None, f"line is {size / MIB:.1f} MiB, over the "
                                      f"{max_bytes / MIB:.1f} MiB limit; skipped")
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
            data = handle.read().removeprefix(codecs.BOM_UTF8)
        except _STREAM_ERRORS as exc:
            yield RawRow(None, None, Issue(name, None, None, f"file is truncated or corrupt ({exc})"))
            return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield RawRow(line, None, Issue(name, line, None, "invalid UTF-8 in this line; the file cannot be read"))
        return

    def line_at(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def truncated() -> RawRow:  # the file ends where another element or the closing "]" should be
        end = line_at(len(text.rstrip()))
        return RawRow(end, None, Issue(name, end, None, "file is truncated: the JSON array is not closed"))

    if not text.strip():
        yield RawRow(None, None, Issue(name, None, None, "file is empty"))
        return
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if text[pos] != "[":
        yield RawRow(line_at(pos), None, Issue(name, line_at(pos), None, _not_an_array(text[pos])))
        return
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        yield from _after_array(text, pos + 1, name)
        return
    while True:
        if pos >= len(text):
            yield truncated()
            return
        line = line_at(pos)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            at_end = _skip_ws(text, exc.pos) >= len(text)
            cut = " (the file ends inside this element: it is truncated)" if at_end else ""
            yield RawRow(exc.lineno, None, Issue(name, exc.lineno, None, f"not valid JSON: {exc.msg}{cut}; "
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
            yield from _after_array(text, pos + 1, name)
            return
        elif pos < len(text):
            yield RawRow(line_at(pos), None, Issue(name, line_at(pos), None, "expected ',' or ']' in the JSON array; "
                                                   "the file is malformed here"))
            return


def _not_an_array(first: str) -> str:
    found = {"{": "a JSON object (for one object per line, name the file .jsonl)", '"': "a JSON string",
             "t": "a JSON boolean", "f": "a JSON boolean", "n": "JSON null"}.get(first)
    if found is None:
        found = "a JSON number" if first in "-0123456789" else "text that is not JSON"
    return f"expected a JSON array of objects, found {found}"


def _after_array(text: str, pos: int, name: str) -> Iterator[RawRow]:
    """Anything but whitespace after the closing "]" is a second value the reader would silently drop."""
    pos = _skip_ws(text, pos)
    if pos < len(text):
        line = text.count("\n", 0, pos) + 1
        yield RawRow(line, None, Issue(name, line, None, "unexpected text after the end of the JSON array; "
                                       "it is not read"))


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# --- CSV -------------------------------------------------------------------------------------------------------------
# Invalid bytes are decoded with "surrogateescape" (one lone surrogate per bad byte) so that the decoder never stops;
# each row is then checked for them and reported at its own line.
_ESCAPED = re.compile("[\udc80-\udcff]")
_QUOTED = re.compile(r'(?:[^"]+|"")*')  # inside a quoted value: anything but a lone quote
_UNQUOTED = re.compile(r"[^,\r\n]*")  # an unquoted value, or what follows a closing quote ("a"b reads as ab)


class _Lines:
    """The lines handed to the csv parser (`feed`), counted per record (the parser's own line_num misses the lines
    skipped after an error), with the current record's lines kept to find the value a parser error stopped in."""

    def __init__(self, text: Iterator[str]):
        self.text, self.done = text, 0  # done: lines of the records already read
        self.record: list[str] = []
        self.exhausted = False
        self.feed = self._feed()

    def _feed(self) -> Iterator[str]:
        keep = self.record.append
        for line in self.text:
            keep(line)
            yield line
        self.exhausted = True

    def next_record(self) -> int:
        """Forget the record just read; the line the next one starts at."""
        self.done += len(self.record)
        self.record.clear()
        return self.done + 1

    def skip_open_quote(self) -> bool:
        """Skip to the end of a record whose quoted value is still open; False if the file ends first."""
        inside = True
        while inside:
            line = next(self.text, None)
            if line is None:
                return False
            self.done += 1
            inside = _scan_fields(line, inside=True)[1]
        return True


def _scan_fields(text: str, inside: bool = False) -> tuple[list[int], bool]:
    """The lengths of the values in (part of) a CSV record as the csv module reads them (excel dialect), and whether
    the text ends inside a quoted value. `inside`: the text starts inside a quoted value."""
    lengths, length, pos, at_start = [], 0, 0, not inside
    while True:
        if at_start and text.startswith('"', pos):
            inside, pos = True, pos + 1
        if inside:
            part = _QUOTED.match(text, pos).group()  # type: ignore[union-attr]
            length += len(part) - part.count('""')
            pos += len(part)
            if pos >= len(text):
                return [*lengths, length], True
            pos, inside = pos + 1, False  # the closing quote
        end = _UNQUOTED.match(text, pos).end()  # type: ignore[union-attr]
        lengths.append(length + end - pos)
        length, pos = 0, end
        if pos >= len(text) or text[pos] != ",":
            return lengths, False
        pos, at_start = pos + 1, True


def _clean(text: str) -> str:
    """Text with escaped bad bytes shown as U+FFFD, so that it can be written out again as UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read_csv(path: Path, required: tuple[str, ...] = (), max_field_bytes: int = DEFAULT_MAX_LINE_BYTES
             ) -> Iterator[RawRow]:
    """CSV with a header row. Reports missing required columns at the header's line, then each row at its own line.

    A value over `max_field_bytes` is reported at its row, and reading goes on after the row's end, found by
    following its quotes. Only a quoted value that is never closed stops the reading: the rest of the file is
    inside it."""
    name = str(path)
    header: list[str] | None = None
    for start, values, issue in _csv_records(path, max_field_bytes):
        if values is None:
            yield RawRow(start, None, issue)
        elif header is None:
            header = values
            issues = _check_header(header, required, name, start)
            yield from (RawRow(start, None, issue) for issue in issues)
            if issues:
                return
        else:
            yield _csv_row(values, header, name, start)


def _csv_records(path: Path, max_field_bytes: int) -> Iterator[tuple[int | None, list[str] | None, Issue | None]]:
    """(first line, values, None) for each non-blank record, the header first, or (line, None, issue) for a record
    that cannot be read."""
    name = str(path)
    # The csv module's limit is 128 KiB by default; long answers are legitimate, so use ours. It counts characters
    # (multi-byte text may take more bytes) and is process-wide, so it is ours only while our parser runs.
    limit = min(max_field_bytes, 2**31 - 1)  # the most a C long holds everywhere
    header: list[str] | None = None
    with open_binary(path) as binary:
        lines = _Lines(io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline=""))
        reader = csv.reader(lines.feed)
        while True:
            start = lines.next_record()
            previous = csv.field_size_limit(limit)
            try:
                values, error = next(reader), None
            except StopIteration:
                break
            except (csv.Error, *_STREAM_ERRORS) as exc:
                values, error = [], exc
            finally:
                csv.field_size_limit(previous)
            if isinstance(error, csv.Error):
                issue, go_on = _broken_record(lines, error, header, limit, name, start)
                yield start, None, issue
                if go_on and header is not None:
                    continue
                return
            if error is not None:
                yield start, None, Issue(name, start, None, f"file is truncated or corrupt here ({error}); the rows "
                                         "before were read")
                return
            if values and lines.exhausted:
                # The parser only reads past a record's last line when a quoted value is still open: the file ended
                # inside it, and the rows after its opening quote were swallowed into it.
                field = header[len(values) - 1] if header and len(values) <= len(header) else None
                yield start, None, Issue(name, start, field, "a quoted value is never closed; the rest of the file "
                                         "is inside it and cannot be read")
                return
            if values:  # else a blank line
                header = values if header is None else header
                yield start, values, None
    if header is None:
        yield None, None, Issue(name, None, None, "file is empty")


def _broken_record(lines: _Lines, exc: csv.Error, header: list[str] | None, limit: int, name: str, start: int
                   ) -> tuple[Issue, bool]:
    """The issue for a record the csv parser gave up on, and whether reading can go on after it."""
    lengths, inside = _scan_fields("".join(lines.record))
    index = next((i for i, n in enumerate(lengths) if n > limit), len(lengths) - 1)
    field = header[index] if header and index < len(header) else None
    what = f"value is over the {limit / MIB:.1f} MiB limit" if "field limit" in str(exc) else f"unreadable CSV ({exc})"
    try:
        resynced = not inside or lines.skip_open_quote()
    except _STREAM_ERRORS as error:
        return Issue(name, start, field, f"{what}; then the file is truncated or corrupt ({error})"), False
    if resynced:
        return Issue(name, start, field, f"{what}; row skipped"), True
    return Issue(name, start, field, f"{what}, and its quoted value is never closed; the rest of the file is inside "
                 "it and cannot be read"), False


def _check_header(header: list[str], required: tuple[str, ...], name: str, line: int) -> list[Issue]:
    if any(_ESCAPED.search(column) for column in header):
        return [Issue(name, line, None, "invalid UTF-8 in the header; is the file in another encoding?")]
    return [Issue(name, line, column, f"column {column!r} is missing from the header (found: {', '.join(header)})")
            for column in required if column not in header]


def _csv_row(values: list[str], header: list[str], name: str, start: int) -> RawRow:
    raw = json.dumps(dict(zip(header, values)) if len(values) <= len(header) else values, ensure_ascii=False)
    if not raw.isascii() and _ESCAPED.search(raw):  # isascii is O(1): most rows skip the search
        index, bad = next((i, found) for i, value in enumerate(values) if (found := _ESCAPED.search(value)))
        field = header[index] if index < len(header) else None
        byte = ord(bad.group()) - 0xDC00
        return RawRow(start, None, Issue(name, start, field, f"invalid UTF-8 (byte 0x{byte:02X}); is the file in "
                                         "another encoding?"), _clean(raw))
    if len(values) > len(header):
        return RawRow(start, None, Issue(name, start, None, "more values than header columns"), raw)
    data = {column: (values[i] if i < len(values) and values[i] != "" else None) for i, column in enumerate(header)}
    return RawRow(start, data, None, raw)


# --- Parquet ---------------------------------------------------------------------------------------------------------

def read_parquet(path: Path, batch_rows: int = 1024) -> Iterator[RawRow]:
    """Parquet, streamed in record batches; `line` is the 1-based row number. Row groups are read one by one, so a
    damaged one is reported (its rows, by number) and the others are still read."""
    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        yield RawRow(None, None, Issue(name, None, None, f"not a readable Parquet file ({exc})"))
        return
    first = 1
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        number = first
        try:
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group]):
                for row in batch.to_pylist():
                    yield RawRow(number, row, None)
                    number += 1
        except Exception as exc:  # OSError, ArrowInvalid, ... for a damaged page
            last = first + size - 1
            yield RawRow(number, None, Issue(name, number, None, f"rows {number}-{last} cannot be read: the file is "
                                             f"damaged there ({exc})"))
        first += size


def columns_of(path: Path, kind: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> list[str]:
    """Column names of a file (the CSV header, the Parquet schema, the keys of the first readable JSON record), for
    format detection. Raises ValueError naming the file and the first problem found where there are none."""
    if kind == "parquet":
        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    if kind == "csv":  # the header, even when no row follows
        for line, values, issue in _csv_records(path, max_line_bytes):
            issues = [issue] if values is None else _check_header(values, (), str(path), line)
            if issues:
                raise InputError(str(issues[0]))
            return values  # type: ignore[return-value]
    readers = {"jsonl": lambda: read_jsonl(path, max_line_bytes), "json": lambda: read_json_array(path)}
    if kind not in readers:
        raise InputError(f"unknown container {kind!r}; expected one of jsonl, json, csv, parquet")
    first: Issue | None = None
    for row in readers[kind]():
        if row.data is not None:
            return list(row.data)
        first = first or row.issue
    if first is not None:
        raise InputError(str(first))
    raise InputError(f"{path}: file holds no rows" if path.stat().st_size else f"{path}: file is empty")
