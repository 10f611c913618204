"""Atomic writes: write to a temporary sibling, flush to disk, then rename over the target.

A reader never sees a half-written file or folder, and a crash leaves the old version (or nothing) in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _default_mode(folder: bool = False) -> int:
    # mkstemp/mkdtemp create private (0600/0700) entries; ordinary outputs get the usual umask-based permissions.
    return (0o777 if folder else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary file path beside `target`; on success it replaces `target`, on error it is removed.

    The caller writes the file however it likes (pyarrow, json, ...). The temporary name starts with a dot so that
    folder listings and glob patterns skip it. `mode` defaults to the umask's; pass 0o600 for secrets.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    with atomic_path(target, mode=mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    atomic_write_bytes(target, text.encode("utf-8"), mode)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it becomes `target` (replacing an old one)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        swap_in_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_in_dir(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Rename the finished folder `tmp` to `target`, replacing an old `target` (which is only removed afterwards).

    For folders several processes write into (a sharded model save) before the main process renames them."""
    tmp, target = Path(tmp), Path(target)
    os.chmod(tmp, _default_mode(folder=True))
    if target.exists():
        # Move the old folder aside first: os.replace cannot replace a non-empty folder.
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / "x")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    _fsync_dir(target.parent)
    return target


def write_jsonl(rows: Iterable[Any], target: str | os.PathLike[str]) -> Path:
    """Write JSON objects one per line (UTF-8, non-ASCII kept as is), atomically."""
    target = Path(target)
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target
