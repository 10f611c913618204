"""The README and docs say only what the code does: every import in their Python examples runs, and every dotted
name of rlhfkit's packages they mention (`preference.store.load_preferences`) exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("preference", "annotation", "reward", "policy", "rlhfkit")
IMPORT = re.compile(r"^\s*(from\s+[\w.]+\s+import\s+[\w, ()]+|import\s+[\w., ]+)\s*(#.*)?$")
DOTTED = re.compile(r"`((?:%s)(?:\.\w+)+)(?:\(|`)" % "|".join(PACKAGES))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def imports(page: Path) -> list[str]:
    lines = []
    for block in python_blocks(page.read_text()):
        lines += [match.group(1) for line in block.splitlines() if (match := IMPORT.match(line))]
    return lines


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_import_in_the_examples_runs(page):
    for line in imports(page):
        exec(compile(line, f"{page.name}: {line}", "exec"), {})


def resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def setting_paths() -> set[str]:
    """`reward.heldout` and the like: the pipeline config's keys, which docs name the same way as modules."""
    from rlhfkit.pipeline.config import load_config

    def walk(values: dict, prefix: str) -> set[str]:
        out = set()
        for key, value in values.items():
            out.add(prefix + key)
            if isinstance(value, dict):
                out |= walk(value, f"{prefix}{key}.")
        return out

    return walk(load_config(None, {}).model_dump(), "")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_function_and_module_exists(page):
    names = sorted(set(DOTTED.findall(page.read_text())) - setting_paths())
    missing = [name for name in names if not resolves(name)]
    assert not missing, f"{page.name} names what the code does not have: {missing}"


def test_the_instruction_entry_points_import_from_their_package_without_loading_dspy():
    import subprocess
    import sys

    import policy.instructions

    for name in policy.instructions.__all__:
        assert f"`{name}`" in (ROOT / "README.md").read_text(), name  # the README names each entry point
        assert getattr(policy.instructions, name).__name__ == name
    light = subprocess.run([sys.executable, "-c", "import sys, policy.instructions; print('dspy' in sys.modules)"],
                           capture_output=True, text=True, cwd=ROOT)
    assert light.stdout.strip() == "False", light.stderr
