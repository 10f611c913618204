"""Where rlhfkit keeps its files.

`RLHFKIT_HOME` (environment) wins; otherwise the platform's user cache dir (`~/.cache/rlhfkit` on Linux).
Converted models, the Label Studio data dir and generated tokens live under it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platformdirs import user_cache_dir

HOME_ENV = "RLHFKIT_HOME"


def rlhfkit_home() -> Path:
    """The rlhfkit home folder, created if missing."""
    raw = os.environ.get(HOME_ENV)
    home = Path(raw).expanduser() if raw else Path(user_cache_dir("rlhfkit"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def models_dir() -> Path:
    """Folder of converted models (one sub-folder per model)."""
    path = rlhfkit_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


LABEL_STUDIO_VENV_ENV = "RLHFKIT_LABEL_STUDIO_VENV"


def label_studio_dir() -> Path:
    """Label Studio's files: data dir (SQLite, media), its HOME, generated credentials."""
    path = rlhfkit_home() / "labelstudio"
    path.mkdir(parents=True, exist_ok=True)
    return path


def label_studio_venv() -> Path:
    """The Label Studio server's own virtualenv (it pins openai<2, which conflicts with dspy's litellm).

    `RLHFKIT_LABEL_STUDIO_VENV` wins (the Makefile points it at the checkout's `.venv-labelstudio`); else
    `.venv-labelstudio` beside the virtualenv running rlhfkit; else the rlhfkit home's."""
    raw = os.environ.get(LABEL_STUDIO_VENV_ENV)
    if raw:
        return Path(raw).expanduser()
    return _beside_this_venv(".venv-labelstudio") or label_studio_dir() / "venv"


VLLM_VENV_ENV = "RLHFKIT_VLLM_VENV"


def vllm_venv() -> Path:
    """The vLLM engine's own virtualenv (vLLM pins its own torch and transformers).

    `RLHFKIT_VLLM_VENV` wins (the Makefile points it at the checkout's `.venv-vllm`); else `.venv-vllm` beside the
    virtualenv running rlhfkit (what `make setup` creates, so `.venv/bin/rlhfkit` finds it outside make too);
    else the rlhfkit home's `vllm-venv`."""
    raw = os.environ.get(VLLM_VENV_ENV)
    if raw:
        return Path(raw).expanduser()
    return _beside_this_venv(".venv-vllm") or rlhfkit_home() / "vllm-venv"


def _beside_this_venv(name: str) -> Path | None:
    """The virtualenv `name` next to the one running rlhfkit (the checkout's `make setup` layout), if it exists."""
    beside = Path(sys.prefix).parent / name
    return beside if sys.prefix != sys.base_prefix and (beside / "bin" / "python").exists() else None
