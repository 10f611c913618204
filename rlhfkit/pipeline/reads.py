"""Which settings a stage used: a read-only view of the run's config that records every value it hands out.

A stage sees the config only through `RecordingConfig`, so the manifest can keep, per finished stage, the dotted
path and value of each setting the stage actually read (`{"evaluate.n_bootstrap": 2000, "seed": 0}`). A rerun with
another config then reruns exactly the finished stages whose recorded values changed, and every later one, with no
hand-kept table of which stage reads which section to fall out of date.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel


class RecordingConfig:
    """`model` seen attribute by attribute: nested sections come back as views, leaves are recorded in `reads`."""

    __slots__ = ("_model", "_prefix", "_reads")

    def __init__(self, model: BaseModel, reads: dict[str, Any], prefix: str = "") -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        if name.startswith("_") or callable(value):  # pydantic's own methods, not settings
            return value
        path = f"{self._prefix}{name}"
        if isinstance(value, BaseModel):
            return RecordingConfig(value, self._reads, f"{path}.")
        self._reads[path] = json.loads(json.dumps(value, default=str))  # a copy: later edits cannot alter it
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the run's config is read-only inside a stage (tried to set {self._prefix}{name})")

    def __repr__(self) -> str:
        return f"RecordingConfig({self._model!r})"


def value_at(settings: dict[str, Any], path: str) -> Any:
    """The value at dotted `path` of a dumped config (`model_dump(mode="json")`); a missing key reads as `KeyError`."""
    node: Any = settings
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def changed_reads(reads: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """The recorded paths whose value in `settings` differs from the recorded one (or no longer exists)."""
    changed = []
    for path, value in reads.items():
        try:
            now = value_at(settings, path)
        except KeyError:
            changed.append(path)
            continue
        if now != value:
            changed.append(path)
    return changed
