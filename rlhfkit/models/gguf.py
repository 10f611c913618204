"""Turn a GGUF checkpoint into a plain Hugging Face folder (config + safetensors + tokenizer), once.

transformers can load a GGUF file (`from_pretrained(folder, gguf_file=name)`) and dequantises it on the way in, but the
result still carries a GGUF `quantization_config` and `save_pretrained` refuses it ("not serializable"). Loading takes
~15-20 s on a small CPU, so we do it once: copy the dequantised weights into a fresh, unquantised model of the same
architecture and save that. Later loads are ordinary `from_pretrained(folder)` calls that take a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from rlhfkit.core.atomic import atomic_dir

log = logging.getLogger(__name__)

#: Written into every converted folder; says where the weights came from and lets us spot a stale cache.
SOURCE_FILE = "rlhfkit_source.json"
# Hashing the whole file would cost as much as a cheap re-check should save; the head holds the header and metadata
# (tensor names, shapes, quantisation types) plus the first tensors, which is plenty to tell two files apart.
_HEAD_BYTES = 1 << 20


def _fingerprint(gguf_path: Path) -> dict[str, Any]:
    """Size and head hash of a GGUF file: cheap, and stable across re-installs that only change the mtime."""
    with open(gguf_path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    return {"size": gguf_path.stat().st_size, "head_sha256": hashlib.sha256(head).hexdigest(), "head_bytes": len(head)}


def _dtype_name(dtype: torch.dtype | str) -> str:
    """"float32" for torch.float32 or "float32": callers that only compare names need not import torch."""
    return str(dtype).removeprefix("torch.")


def is_converted(gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 dtype: torch.dtype | str = "float32") -> bool:
    """True when `out_dir` is a finished conversion of this very GGUF file in this dtype."""
    out_dir = Path(out_dir)
    try:
        source = json.loads((out_dir / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    fingerprint = _fingerprint(Path(gguf_path))
    return (
        (out_dir / "config.json").is_file()
        and source.get("dtype") == _dtype_name(dtype)
        and all(source.get(key) == value for key, value in fingerprint.items())
    )


@contextlib.contextmanager
def conversion_lock(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive lock on a hidden sibling of `out_dir`, so two processes never convert the same model at once."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir.with_name(f".{out_dir.name}.lock")
    with open(lock_path, "a+b") as handle:
        # Blocks until the other process is done; it is released by closing the file, even if we crash.
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _save_dequantised(gguf_path: Path, tmp: Path, dtype: torch.dtype) -> None:
    """Load the GGUF through transformers and save an unquantised copy of it (model + tokenizer) into `tmp`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    # local_files_only: the file is on disk; never let a typo turn into a hub download.
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype, local_files_only=True)

    # The loaded config carries the GGUF quantization_config that makes save_pretrained refuse; rebuild it without.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["dtype"] = _dtype_name(dtype)
    config = AutoConfig.for_model(**config_dict)

    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # strict: every tensor must find its place. With tie_word_embeddings the state dict lists lm_head.weight and
    # embed_tokens.weight as one shared tensor on both sides, so the copy lands in the single shared parameter.
    model.load_state_dict(loaded.state_dict(), strict=True)
    if config.tie_word_embeddings:
        input_weight, output_weight = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        if input_weight.data_ptr() != output_weight.data_ptr():
            raise RuntimeError("tie_word_embeddings is set but the converted model's embeddings are not tied")
    model.eval()

    # transformers 5 writes safetensors only (the safe_serialization switch is gone); tied weights are stored once.
    model.save_pretrained(tmp)
    # A GGUF carries no model_max_length (transformers then says 1e30); the context length is the honest limit.
    if tokenizer.model_max_length > config.max_position_embeddings:
        tokenizer.model_max_length = config.max_position_embeddings
    # Loading options leak into init_kwargs and would be written into tokenizer_config.json for every later load.
    for key in ("is_local", "local_files_only"):
        tokenizer.init_kwargs.pop(key, None)
    tokenizer.save_pretrained(tmp)


def convert_gguf(
    gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], dtype: torch.dtype | str = "float32"
) -> Path:
    """Convert `gguf_path` into a Hugging Face folder at `out_dir` and return `out_dir`.

    Does nothing when `out_dir` already holds a conversion of the same file and dtype (see `rlhfkit_source.json`).
    The folder appears atomically: an interrupted or failed conversion leaves no `out_dir` (or the previous one).
    """
    gguf_path, out_dir = Path(gguf_path).resolve(), Path(out_dir)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")
    if is_converted(gguf_path, out_dir, dtype):
        return out_dir
    with conversion_lock(out_dir):
        # Another process may have finished the conversion while we waited for the lock.
        if is_converted(gguf_path, out_dir, dtype):
            return out_dir
        log.info("converting %s once (dequantising to %s), cached at %s", gguf_path.name, _dtype_name(dtype), out_dir)
        start = time.perf_counter()
        import torch
        import transformers

        with atomic_dir(out_dir) as tmp:
            _save_dequantised(gguf_path, tmp, getattr(torch, _dtype_name(dtype)))

            source = {
                "source": str(gguf_path),
                **_fingerprint(gguf_path),
                "dtype": _dtype_name(dtype),
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            # is_converted() compares against this record to tell a current cache from a stale one.
            (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        log.info("converted %s in %.1f s", gguf_path.name, time.perf_counter() - start)
    return out_dir
