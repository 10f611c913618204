"""Instruction optimisation: LLM-written instruction templates, evolutionary search and DSPy instruction tuning.

The four entry points import from here (`from policy.instructions import InstructionEvolution`); each is loaded on
first use, so importing the package does not pull in DSPy.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "InstructionEvolution": "teleprompter",
    "InstructionTemplateGenerator": "templates",
    "EvolutionaryInstructionOptimizer": "evolution",
    "DSPyInstructionTuner": "dspy_tuner",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
