"""Imports point one way: rlhfkit cli/pipeline -> policy, annotation -> reward -> preference -> rlhfkit.lm ->
rlhfkit.models -> rlhfkit.core.

Checked with import-linter's layers contract from pyproject.toml.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_project_keeps_its_layers():
    result = lint(REPO, REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # A miniature tree with the same package names, where the core imports the preference layer.
    for package in ("rlhfkit", "rlhfkit/core", "rlhfkit/models", "rlhfkit/lm", "rlhfkit/cli", "rlhfkit/pipeline",
                    "preference", "reward", "policy", "annotation"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "preference" / "schema.py").write_text("X = 1\n")
    (tmp_path / "rlhfkit" / "core" / "settings.py").write_text("from preference.schema import X\n")
    result = lint(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "rlhfkit.core is not allowed to import preference" in result.stdout
