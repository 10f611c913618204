"""Problems found in input data, each naming the file, the line (or row) and the field."""

from __future__ import annotations

import dataclasses
from typing import Literal

from rlhfkit.core.errors import InputError

Severity = Literal["error", "warning"]


@dataclasses.dataclass(frozen=True)
class Issue:
    """One problem in one place. `line` is 1-based (a row number for Parquet); None for the file as a whole."""

    file: str
    line: int | None
    field: str | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}{field}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class DataError(InputError):
    """Raised when input data has errors; carries every issue found so a caller can list them all."""

    def __init__(self, issues: list[Issue], summary: str | None = None):
        self.issues = issues
        head = summary or f"{len(issues)} problem(s) in the input"
        shown = "\n".join(f"  {issue}" for issue in issues[:20])
        more = f"\n  ... and {len(issues) - 20} more" if len(issues) > 20 else ""
        super().__init__(f"{head}\n{shown}{more}")
