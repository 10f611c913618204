"""Anthropic HH-RLHF: each row holds two full dialogues, `chosen` and `rejected`, in the
"\\n\\nHuman: ...\\n\\nAssistant: ..." transcript format.

The prompt is everything before the last "\\n\\nAssistant:" (kept as chat messages), the response is what follows.
Pairs whose two contexts differ, or whose answers are identical, are kept but flagged in `metadata["flags"]`,
reported by the import, and dropped by the exporters unless asked otherwise.

`chosen` always becomes response_a, so the file says nothing about which answer a rater saw first: records carry
`metadata["position_unknown"] = True`, and position-bias statistics leave them out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preference.errors import Issue
from preference.importers.base import ImportOptions, RowResult, convert_rows
from preference.schema import Message, PreferenceRecord
from preference.validation import RowContext, build_record

ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def split_dialogue(text: str) -> tuple[list[Message], str] | None:
    """Split a transcript at its last assistant turn into (chat prompt, final answer); None if there is none."""
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        return None
    context, answer = text[:cut], text[cut + len(ASSISTANT):]
    marks = list(_TURN.finditer(context))
    messages: list[Message] = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(context)
        messages.append({"role": _ROLES[mark.group(1)], "content": context[mark.end():end].strip()})
    if not messages and context.strip():
        messages.append({"role": "user", "content": context.strip()})
    return messages, answer.strip()


def convert(row: dict[str, Any], ctx: RowContext, options: ImportOptions) -> tuple[list[PreferenceRecord], list[Issue]]:
    issues: list[Issue] = []
    parts = {}
    for field in ("chosen", "rejected"):
        value = row.get(field)
        if not isinstance(value, str):
            what = "is missing" if value is None else f"must be a string, not {type(value).__name__}"
            issues.append(Issue(ctx.file, ctx.line, field, what))
            continue
        split = split_dialogue(value)
        if split is None:
            issues.append(Issue(ctx.file, ctx.line, field, "has no '\\n\\nAssistant:' turn"))
            continue
        parts[field] = split
    if issues:
        return [], issues
    (prompt, chosen), (rejected_prompt, rejected) = parts["chosen"], parts["rejected"]
    metadata: dict[str, Any] = {"position_unknown": True}  # see the module docstring
    if prompt != rejected_prompt:
        metadata["flags"] = ["differing_context"]
        issues.append(Issue(ctx.file, ctx.line, "rejected", "dialogue context differs from chosen's (kept, flagged; "
                            "the chosen context is used)", "warning"))
    ctx.field_names = {"response_a": "chosen", "response_b": "rejected", "prompt": "chosen"}
    record, more = build_record(
        {"prompt": prompt, "response_a": chosen, "response_b": rejected, "label": "a", "metadata": metadata,
         "item": ctx.line}, ctx
    )
    return ([record] if record else []), issues + more


def read(path: Path, options: ImportOptions) -> Iterator[RowResult]:
    options = dataclasses.replace(options, annotator=options.annotator or "hh-rlhf")
    return convert_rows(path, options, convert, default_degenerate="flag")
