"""TRL preference datasets: `chosen` / `rejected` with an explicit `prompt` column or an implicit one (the shared
beginning of both), each in TRL's standard (text) or conversational (chat messages) form.

`chosen` becomes response_a with label "a". The file does not say which answer a rater saw first, so records carry
`metadata["position_unknown"] = True` and position-bias statistics leave them out. Strength is not part of TRL's
format; a `margin` column is kept in metadata. See https://huggingface.co/docs/trl/dataset_formats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preference.errors import Issue
from preference.importers.base import ImportOptions, RowResult, convert_rows
from preference.schema import PreferenceRecord
from preference.validation import RowContext, build_record


def _common_prefix_len(a: list[Any] | str, b: list[Any] | str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def split_implicit(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """(prompt, chosen completion, rejected completion) from two full texts or message lists.

    Chat: the prompt is the longest run of shared whole messages, never ending on an assistant turn (as TRL's
    `extract_prompt`). Text: the prompt is the shared beginning cut back to the start of its last run of whitespace,
    which goes to the completions: "The sky is blue." / "The sky is bright." give "The sky is" + " blue." /
    " bright.". TRL moves one space only when the texts differ right after it, and otherwise splits mid-word
    ("The sky is b" + "lue."). A shared beginning without any whitespace (e.g. Chinese text) is split where the
    texts differ, as TRL does, rather than losing the row."""
    n = _common_prefix_len(chosen, rejected)
    if isinstance(chosen, list) and n and chosen[n - 1].get("role") == "assistant":
        n -= 1  # never absorb an assistant turn into the prompt
    if isinstance(chosen, str):
        n = _word_boundary(chosen, n)
    return chosen[:n], chosen[n:], rejected[n:]


def _word_boundary(text: str, n: int) -> int:
    """`n` moved back over a partial word and the whitespace before it; unchanged where there is no such
    whitespace (or nothing before it)."""
    word = n
    while word > 0 and not text[word - 1].isspace():
        word -= 1
    gap = word
    while gap > 0 and text[gap - 1].isspace():
        gap -= 1
    return gap if word > 0 and gap > 0 else n


def completion_text(value: Any, field: str, ctx: RowContext) -> tuple[str | None, list[Issue]]:
    """A completion is a string, or (conversational) exactly one assistant message."""
    if isinstance(value, str) or value is None:
        return value, []
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        message = value[0]
        if message.get("role") != "assistant":
            return None, [Issue(ctx.file, ctx.line, field, f"completion message has role {message.get('role')!r}, "
                                "expected 'assistant'")]
        return message.get("content"), []
    if isinstance(value, list):
        return None, [Issue(ctx.file, ctx.line, field, f"completion must be one assistant message, got {len(value)}")]
    return None, [Issue(ctx.file, ctx.line, field, f"must be a string or chat messages, not {type(value).__name__}")]


def convert(row: dict[str, Any], ctx: RowContext, options: ImportOptions) -> tuple[list[PreferenceRecord], list[Issue]]:
    chosen, rejected, prompt = row.get("chosen"), row.get("rejected"), row.get("prompt")
    issues = [Issue(ctx.file, ctx.line, field, "is missing") for field, v in (("chosen", chosen),
                                                                              ("rejected", rejected)) if v is None]
    if issues:
        return [], issues
    if prompt is None:
        if type(chosen) is not type(rejected):
            return [], [Issue(ctx.file, ctx.line, "rejected", "must have the same form (text or chat) as chosen")]
        prompt, chosen, rejected = split_implicit(chosen, rejected)
        if not prompt:
            return [], [Issue(ctx.file, ctx.line, "prompt", "no prompt column and chosen/rejected share no beginning")]
    chosen_text, issues_a = completion_text(chosen, "chosen", ctx)
    rejected_text, issues_b = completion_text(rejected, "rejected", ctx)
    if issues_a or issues_b:
        return [], issues_a + issues_b
    metadata: dict[str, Any] = {"position_unknown": True}  # see the module docstring
    if row.get("margin") is not None:
        metadata["margin"] = row["margin"]
    ctx.field_names = {"response_a": "chosen", "response_b": "rejected"}
    record, more = build_record(
        {"prompt": prompt, "response_a": chosen_text, "response_b": rejected_text, "label": "a",
         "metadata": metadata, "annotator": row.get("annotator"), "source": row.get("source"),
         "item": ctx.line},
        ctx,
    )
    return ([record] if record else []), more


def read(path: Path, options: ImportOptions) -> Iterator[RowResult]:
    options = dataclasses.replace(options, annotator=options.annotator or f"trl:{path.name}")
    return convert_rows(path, options, convert, default_degenerate="error", required=("chosen", "rejected"))
