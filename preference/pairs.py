"""Unlabeled pairs: what annotators (people in Label Studio, verifiers, reward models, judges) are asked to judge.

A pairs file is JSONL (or Parquet / CSV) with `prompt` (text or chat messages), `response_a`, `response_b` and an
optional `metadata` object (IFEval-style pairs carry `instruction_id_list` and `kwargs` there for the verifier).
A preference store's records also give pairs (`pairs_from_records`), one per pair id.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from preference.errors import DataError, Issue
from preference.importers.base import ImportOptions, container_of, read_container
from preference.importers.generic import text_or_chat
from preference.schema import PreferenceRecord, Prompt, pair_id
from preference.validation import RowContext, check_prompt, check_text
from rlhfkit.core.atomic import write_jsonl


@dataclasses.dataclass(frozen=True)
class Pair:
    prompt: Prompt  # text or chat messages
    response_a: str
    response_b: str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. instruction_id_list, kwargs, source

    @property
    def pair_id(self) -> str:
        return pair_id(self.prompt, self.response_a, self.response_b)

    def to_row(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "response_a": self.response_a, "response_b": self.response_b,
                "metadata": self.metadata}


def pairs_from_records(records: Iterable[PreferenceRecord]) -> list[Pair]:
    """One pair per pair id, in first-seen order (metadata of the first record, without rlhfkit's own keys)."""
    seen: dict[str, Pair] = {}
    for record in records:
        if record.pair_id not in seen:
            # Facts about how a judgment was made or displayed, not about the pair itself.
            metadata = {k: v for k, v in record.metadata.items()
                        if k not in ("flags", "shown_swapped", "position_unknown")}
            seen[record.pair_id] = Pair(record.prompt, record.response_a, record.response_b, metadata)
    return list(seen.values())


def read_pairs(path: str | Path) -> list[Pair]:
    """Read a pairs file; raises `DataError` listing every bad row (file, line, field)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    pairs, issues = [], []
    kind = container_of(path)
    for raw in read_container(path, kind, ImportOptions()):
        if raw.issue is not None or raw.data is None:
            issues += [raw.issue] if raw.issue else []
            continue
        ctx = RowContext(file=str(path), line=raw.line)
        row = raw.data
        prompt = row.get("prompt")
        if isinstance(prompt, str) and kind in ("csv", "parquet"):
            prompt = text_or_chat(prompt)  # chat prompts are stored as JSON text in CSV and Parquet
        prompt, row_issues = check_prompt(prompt, ctx)
        row_issues += check_text(row.get("response_a"), ctx, "response_a")
        row_issues += check_text(row.get("response_b"), ctx, "response_b")
        metadata = row.get("metadata") or {}
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError as exc:
                metadata = None
                row_issues.append(Issue(str(path), raw.line, "metadata", f"is not valid JSON ({exc.msg})"))
        if metadata is not None and not isinstance(metadata, dict):
            row_issues.append(Issue(str(path), raw.line, "metadata", "must be an object"))
        if row_issues:
            issues += row_issues
        else:
            pairs.append(Pair(prompt, row["response_a"], row["response_b"], metadata))
    if issues:
        raise DataError(issues, f"{path}: {len(issues)} problem(s) in the pairs file")
    return pairs


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> Path:
    """Write pairs as JSONL, atomically."""
    return write_jsonl((pair.to_row() for pair in pairs), path)


