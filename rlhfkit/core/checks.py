"""Config validation: every config's `validate()` lists (condition, message) pairs and fails on the first false one."""

from __future__ import annotations

from collections.abc import Iterable

from rlhfkit.core.errors import InputError


def require(checks: Iterable[tuple[bool, str]], owner: str) -> None:
    """Raise `ValueError("OWNER: message")` for the first check whose condition is false."""
    for ok, message in checks:
        if not ok:
            raise InputError(f"{owner}: {message}")
