"""A preference store: a folder of Parquet shards plus a manifest, loadable as a `datasets.Dataset`.

    my-prefs/
      store.json              manifest: format, version, the list of committed shards
      data/part-00000-<id>.parquet
      current/judgments-<id>.parquet  the current view: every judgment once, superseded ones left out (<id> follows
                                  the shards, so `datasets` never serves a cached older view)
      README.md               dataset card: `load_dataset("my-prefs")` reads the current view

Appends write new shards and then swap the manifest atomically; old shards are never rewritten, so every edit stays
on record. A shard that is not in the manifest (a crash mid-append) is invisible and removed by the next append. A
judgment written again with the same `judgment_id` (an edited annotation) supersedes the earlier one when the store
is read. After each append the current view and the card are rewritten (atomically, under the store's lock).

Loading, the same rows either way: `load_preferences(path)` (or `PreferenceStore(path).load()`) in rlhfkit, and
`datasets.load_dataset(path, split="train")` anywhere `datasets` is installed; the card's `history` config
(`load_dataset(path, "history")`) holds every judgment ever written, superseded ones included.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from preference.schema import COLUMNS, PreferenceRecord, now_iso
from rlhfkit.core.atomic import atomic_dir, atomic_path, atomic_write_text
from rlhfkit.core.errors import InputError

MANIFEST = "store.json"
FORMAT = "rlhfkit-preferences"
VERSION = 1
SCHEMA = pa.schema([pa.field(name, pa.string(), nullable=True) for name in COLUMNS])
SHARD_ROWS = 50_000
CURRENT_DIR = "current"
CARD = "README.md"


class StoreError(InputError):
    """The folder is not a usable preference store."""


class PreferenceStore:
    """Append-only preference store at `path` (created on first append)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- reading ---------------------------------------------------------------------------------------------------
    @staticmethod
    def is_store(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    def manifest(self) -> dict[str, Any]:
        file = self.path / MANIFEST
        if not file.is_file():
            return {"format": FORMAT, "version": VERSION, "shards": []}
        try:
            manifest = json.loads(file.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{file}: manifest is not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise StoreError(f"{file}: not an rlhfkit preference store (format={found!r})")
        if manifest.get("version", 0) > VERSION:
            raise StoreError(f"{file}: store version {manifest['version']} is newer than this rlhfkit reads "
                             f"({VERSION})")
        shards = manifest.get("shards")
        if not isinstance(shards, list) or not all(isinstance(s, dict) and isinstance(s.get("file"), str)
                                                   for s in shards):
            raise StoreError(f"{file}: the manifest's shard list is damaged")
        return manifest

    def shard_paths(self) -> list[Path]:
        return [self.path / shard["file"] for shard in self.manifest()["shards"]]

    def _read_shard(self, path: Path) -> pa.Table:
        try:
            return pq.read_table(path, schema=SCHEMA)
        except FileNotFoundError as exc:
            raise StoreError(f"{path}: a shard listed in {self.path / MANIFEST} is missing") from exc
        except (pa.ArrowException, OSError) as exc:
            raise StoreError(f"{path}: shard cannot be read ({exc})") from exc

    def table(self) -> pa.Table:
        """All current judgments as an Arrow table (a superseded judgment is dropped, the latest kept)."""
        tables = [self._read_shard(path) for path in self.shard_paths()]
        if not tables:
            return SCHEMA.empty_table()
        table = pa.concat_tables(tables)
        ids = table.column("judgment_id").to_pylist()
        last = {judgment: index for index, judgment in enumerate(ids)}
        if len(last) == len(ids):
            return table
        keep = sorted(last.values())
        return table.take(pa.array(keep))

    def load(self):  # -> datasets.Dataset (imported lazily: `datasets` is slow to import)
        from datasets import Dataset

        return Dataset(self.table())

    def records(self) -> Iterator[PreferenceRecord]:
        for index, row in enumerate(self.table().to_pylist()):
            try:
                yield PreferenceRecord.from_row(row)
            except (ValueError, KeyError, TypeError) as exc:  # written by something other than rlhfkit
                raise StoreError(f"{self.path}: judgment {index} ({row.get('judgment_id')}) is damaged: {exc}") from exc

    def __len__(self) -> int:
        return self.table().num_rows

    # -- writing ---------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: is a file, not a preference store folder")
        if self.path.is_dir() and not self.is_store(self.path) and any(
                entry.name != ".lock" for entry in self.path.iterdir()):
            # Never adopt (and "clean up") a folder that holds someone else's files.
            raise StoreError(f"{self.path}: folder exists, is not empty and is not a preference store (no "
                             f"{MANIFEST}); choose a new or empty folder")
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def writer(self, note: str = "") -> Iterator[ShardWriter]:
        """Write records in shards; they become visible together when the block ends without an exception."""
        with self._lock():
            manifest = self.manifest()
            self._remove_orphans(manifest)
            writer = ShardWriter(self.path, len(manifest["shards"]))
            try:
                yield writer
                writer.flush()
            except BaseException:
                writer.discard()
                raise
            for shard in writer.shards:
                shard.update(created=now_iso(), note=note)
            manifest["shards"].extend(writer.shards)
            if writer.shards or not self.is_store(self.path):  # a new store is a store even when empty
                atomic_write_text(self.path / MANIFEST, json.dumps(manifest, indent=1) + "\n")
                self._write_current_view()

    def _write_current_view(self) -> None:
        """The current judgments as one Parquet file plus the dataset card that points `load_dataset` at it."""
        table = self.table()
        shards = self.manifest()["shards"]
        # `datasets` caches a local dataset by its file names, not their contents: a name that changes with the
        # shards makes every edit a new dataset to it. The card is switched before the old file goes.
        view = hashlib.sha256("\n".join(shard["file"] for shard in shards).encode()).hexdigest()[:12]
        current = f"{CURRENT_DIR}/judgments-{view}.parquet"
        with atomic_path(self.path / current) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        written = sum(shard["rows"] for shard in shards)
        atomic_write_text(self.path / CARD, _dataset_card(self.path.name, table, written, current))
        for old in (self.path / CURRENT_DIR).glob("judgments*.parquet"):
            if old.name != Path(current).name:
                old.unlink(missing_ok=True)

    def append(self, records: Iterable[PreferenceRecord], note: str = "") -> int:
        """Append records atomically (all or nothing); returns how many were written."""
        with self.writer(note) as writer:
            for record in records:
                writer.add(record)
        return writer.count

    def _remove_orphans(self, manifest: dict[str, Any]) -> None:
        listed = {shard["file"] for shard in manifest["shards"]}
        for path in (self.path / "data").glob("part-*.parquet"):
            if f"data/{path.name}" not in listed:
                path.unlink(missing_ok=True)


class ShardWriter:
    """Buffers records and writes full shards under temporary-then-final names (see `PreferenceStore.writer`)."""

    def __init__(self, root: Path, first_index: int):
        self.root = root
        self.index = first_index
        self.buffer: list[dict[str, Any]] = []
        self.shards: list[dict[str, Any]] = []
        self.count = 0

    def add(self, record: PreferenceRecord) -> None:
        self.buffer.append(record.to_row())
        self.count += 1
        if len(self.buffer) >= SHARD_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        name = f"data/part-{self.index:05d}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(self.root / name) as tmp:
            pq.write_table(pa.Table.from_pylist(self.buffer, schema=SCHEMA), tmp, compression="zstd")
        self.shards.append({"file": name, "rows": len(self.buffer)})
        self.index += 1
        self.buffer = []

    def discard(self) -> None:
        for shard in self.shards:
            (self.root / shard["file"]).unlink(missing_ok=True)
        self.shards, self.buffer = [], []


def _dataset_card(name: str, table: pa.Table, written: int, current: str) -> str:
    """A Hugging Face dataset card whose configs make `load_dataset(store)` read the current view."""
    columns = {column: table.column(column).to_pylist() for column in ("pair_id", "annotator", "label")}
    labels = {label: columns["label"].count(label) for label in sorted(set(columns["label"]))}
    return "\n".join([
        "---",
        "configs:",
        "- config_name: default",
        f"  data_files: {current}",
        "- config_name: history",
        "  data_files: data/*.parquet",
        "tags:",
        "- rlhfkit",
        "- preference",
        "- rlhf",
        "---",
        "",
        f"# {name}: pairwise preferences (rlhfkit store)",
        "",
        f"{table.num_rows} current judgments of {len(set(columns['pair_id']))} pairs by "
        f"{len(set(columns['annotator']))} annotator(s); labels: "
        + ", ".join(f"{label} {count}" for label, count in labels.items()) + ".",
        f"{written - table.num_rows} earlier judgment(s) were superseded by edits.",
        "",
        "```python",
        "from datasets import load_dataset",
        f'current = load_dataset("{name}", split="train")            # one row per current judgment',
        f'history = load_dataset("{name}", "history", split="train") # every judgment ever written',
        "```",
        "",
        "Columns: see rlhfkit's docs/data.md. Written by rlhfkit; do not edit the files by hand (use `rlhfkit data`).",
        "",
    ])


def load_preferences(path: str | Path):
    """Load a preference store as a `datasets.Dataset` (one row per current judgment)."""
    store = PreferenceStore(path)
    if not store.is_store(path):
        raise StoreError(f"{path}: not a preference store (no {MANIFEST}); create one with `rlhfkit data import`")
    return store.load()


def save_preferences(records: Iterable[PreferenceRecord], path: str | Path, note: str = "") -> PreferenceStore:
    """Write `records` to a new store at `path` (refuses to overwrite an existing store's data)."""
    store = PreferenceStore(path)
    if store.is_store(path) and store.manifest()["shards"]:
        raise StoreError(f"{path}: a store with data already exists; append to it or choose another folder")
    store.append(records, note)
    return store


def replace_preferences(path: str | Path, fill: Callable[[PreferenceStore], Any]) -> PreferenceStore:
    """The store at `path` replaced by one that `fill` writes, built in a temporary folder beside it and renamed
    into place: until the rename the old store stays whole, and an interrupted fill leaves it untouched."""
    with atomic_dir(path) as tmp:
        fill(PreferenceStore(tmp))
    return PreferenceStore(path)
