"""Where rlhfkit finds its engines' own virtualenvs: the environment wins, else the checkout's layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rlhfkit.core.settings import LABEL_STUDIO_VENV_ENV, VLLM_VENV_ENV, label_studio_venv, vllm_venv

SHOW = "from rlhfkit.core.settings import label_studio_venv, vllm_venv; print(label_studio_venv()); print(vllm_venv())"


def test_the_environment_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(VLLM_VENV_ENV, str(tmp_path / "v"))
    monkeypatch.setenv(LABEL_STUDIO_VENV_ENV, str(tmp_path / "ls"))
    assert vllm_venv() == tmp_path / "v" and label_studio_venv() == tmp_path / "ls"


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="runs inside a virtualenv (make test's .venv)")
def test_without_the_environment_the_venvs_beside_this_one_are_found(tmp_path):
    """`.venv/bin/rlhfkit` run by hand (not through make) finds `.venv-vllm` and `.venv-labelstudio`."""
    env = {"PATH": "/usr/bin:/bin", "RLHFKIT_HOME": str(tmp_path / "home")}
    shown = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True)
    labelstudio, vllm = (Path(line) for line in shown.stdout.split())
    beside = Path(sys.prefix).parent
    for found, name, home in ((labelstudio, ".venv-labelstudio", tmp_path / "home" / "labelstudio" / "venv"),
                              (vllm, ".venv-vllm", tmp_path / "home" / "vllm-venv")):
        assert found == (beside / name if (beside / name / "bin" / "python").exists() else home)
