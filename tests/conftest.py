"""Shared test set-up: offline Hugging Face, paths of the shared reference data (read in place, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing may download at run time; make any accidental hub access fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# Tests never touch the user's cache: converted models persist across test runs under the (git-ignored) repo cache.
os.environ.setdefault("RLHFKIT_HOME", str(REPO / ".cache" / "test-home"))
# The vLLM engine's virtualenv (the Makefile's .venv-vllm). Tests that run the engine ask for it (`vllm_venv`); every
# other test generates with transformers, so that `backend: auto` does not start a server per tiny model.
VLLM_VENV = Path(os.environ.get("RLHFKIT_VLLM_VENV") or REPO / ".venv-vllm")
os.environ["RLHFKIT_VLLM_VENV"] = str(REPO / ".cache" / "no-vllm-venv")
SHARED_DATA = REPO.parent / "shared" / "data"
HH_PATH = SHARED_DATA / "hh-rlhf-helpful-base" / "test.jsonl.gz"
PANDALM_PATH = SHARED_DATA / "pandalm" / "testset-v1.json"
IFEVAL_PATH = SHARED_DATA / "ifeval" / "input_data.jsonl"


def needs(path: Path):
    """Skip a test when a piece of shared reference data is absent (it sits beside the checkout, not in it)."""
    return pytest.mark.skipif(not path.exists(), reason=f"shared data not found: {path}")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine intra-op threads only wait on each other.
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def vllm_venv(monkeypatch):
    """The real vLLM engine for this test (`backend: auto` then picks it); fails when it is not installed, since
    `make test` installs it."""
    if not (VLLM_VENV / "bin" / "vllm").is_file():
        pytest.fail(f"the vLLM engine is not installed at {VLLM_VENV}; run `make setup`")
    monkeypatch.setenv("RLHFKIT_VLLM_VENV", str(VLLM_VENV))
    return VLLM_VENV
