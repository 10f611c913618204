"""Causal LMs from local folders: loading (a LoRA adapter folder loads merged), a full folder an inference engine can
serve, the weights' time stamp that tells a model retrained in place from the old one, and the shared vLLM server
of a model."""

from __future__ import annotations

from typing import Any

from rlhfkit.models.registry import resolve_model


def load_causal_lm(path: str, dtype: Any = "auto") -> Any:
    """The causal LM in folder (or cached HF id) `path`; a LoRA adapter folder (what a LoRA run saves) loads its
    base with the adapter merged in, so it serves as fast as the base and trains on top of it."""
    from pathlib import Path

    if (Path(path) / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype).merge_and_unload()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)


def servable_folder(path: str) -> str:
    """A full model folder an inference engine can load for `path` (a folder or cached HF id): `path` itself, or for
    a LoRA adapter folder its merge, saved once under the rlhfkit home and keyed on the adapter's files' time (an
    adapter retrained in place is merged again)."""
    from pathlib import Path

    from rlhfkit.core.settings import rlhfkit_home

    folder = Path(path)
    if not (folder / "adapter_config.json").is_file():
        return path
    import hashlib

    from transformers import AutoTokenizer

    from rlhfkit.core.atomic import atomic_dir

    digest = hashlib.sha256(f"{folder.resolve()}@{newest_file_mtime_ns(path)}".encode()).hexdigest()[:16]
    merged = rlhfkit_home() / "merged" / f"{folder.name}-{digest}"
    if not (merged / "config.json").is_file():
        with atomic_dir(merged) as tmp:
            load_causal_lm(path, dtype="auto").save_pretrained(tmp, safe_serialization=True)
            AutoTokenizer.from_pretrained(path).save_pretrained(tmp)
    return str(merged)


def weights_stamp(model: str) -> str:
    """"@<newest file time>" for a model folder, else "". DSPy's cache keys on the LM's name: a model retrained in
    the same folder must not be answered from the old model's cache."""
    stamp = newest_file_mtime_ns(model)
    return f"@{stamp}" if stamp else ""


def newest_file_mtime_ns(model: str) -> int:
    """The newest modification time of the files in a model folder (0 for a name that is not a folder): a model
    retrained in place is another model."""
    from pathlib import Path

    folder = Path(model).expanduser()
    if not folder.is_dir():
        return 0
    return max((f.stat().st_mtime_ns for f in folder.iterdir() if f.is_file()), default=0)


def serve_local(model: str, **settings: Any) -> Any:
    """The running vLLM server (`rlhfkit.models.vllm_server.shared_server`) for a local model name, folder or cached
    id: adapters served merged, the context from the model's config. Generation and DSPy LMs both come here, so
    they share one server per model. `settings`: more `VLLMServer` options (extra_args: vLLM flags)."""
    import json
    from pathlib import Path

    from rlhfkit.models.vllm_server import shared_server

    folder = servable_folder(resolve_model(model))
    context = json.loads((Path(folder) / "config.json").read_text()).get("max_position_embeddings") or 2048
    return shared_server(folder, max_model_len=int(context), **settings)
