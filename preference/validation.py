"""Turn one raw row (already mapped to rlhfkit field names) into a `PreferenceRecord`, or the issues that stop it.

Every check names the field. A row can have several problems; all of them are reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from preference.errors import Issue
from preference.schema import CHAT_ROLES, Label, PreferenceRecord, Strength, now_iso

# What to do with a degenerate pair: an empty response, or response_a == response_b. Importers of the user's own data
# default to "error". The HH-RLHF and PandaLM importers default to "flag": those published sets hold real human
# judgments of empty answers (HH: 4, PandaLM: 54) and two identical HH pairs, and their documented counts include
# them. Flagged records carry metadata["flags"], are reported, and identical pairs are dropped on export.
DegeneratePolicy = Literal["error", "flag"]

LABEL_ALIASES = {
    "a": Label.A, "b": Label.B, "tie": Label.TIE, "both_bad": Label.BOTH_BAD,
    "both-bad": Label.BOTH_BAD, "bothbad": Label.BOTH_BAD, "neither": Label.BOTH_BAD,
    "response_a": Label.A, "response_b": Label.B, "equal": Label.TIE,
}


@dataclasses.dataclass
class RowContext:
    """Where a row comes from, for messages, plus per-import defaults."""

    file: str
    line: int | None
    default_annotator: str | None = None
    default_source: str | None = None
    degenerate: DegeneratePolicy = "error"
    # jsonl / json / csv / parquet: CSV and Parquet cells can only hold text, so some importers decode JSON there.
    container: str | None = None
    # rlhfkit field -> the column name in the user's file, so that messages name the field the user knows.
    field_names: dict[str, str] = dataclasses.field(default_factory=dict)

    def name(self, field: str | None) -> str | None:
        if field is None:
            return None
        head, dot, rest = field.partition("[")
        return self.field_names.get(head, head) + (dot + rest)


def _err(ctx: RowContext, field: str | None, message: str) -> Issue:
    return Issue(ctx.file, ctx.line, ctx.name(field), message)


def check_prompt(value: Any, ctx: RowContext, field: str = "prompt") -> tuple[Any, list[Issue]]:
    if isinstance(value, str):
        return value, ([] if value.strip() else [_err(ctx, field, "is empty")])
    if isinstance(value, list):
        if not value:
            return value, [_err(ctx, field, "is an empty message list")]
        issues = []
        for i, message in enumerate(value):
            if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
                issues.append(_err(ctx, f"{field}[{i}]", "must be {'role': ..., 'content': <string>}"))
            elif message.get("role") not in CHAT_ROLES:
                issues.append(_err(ctx, f"{field}[{i}].role", f"{message.get('role')!r} is not one of {CHAT_ROLES}"))
        clean = [{"role": m["role"], "content": m["content"]} for m in value] if not issues else value
        return clean, issues
    if value is None:
        return value, [_err(ctx, field, "is missing")]
    return value, [_err(ctx, field, f"must be a string or a list of chat messages, not {type(value).__name__}")]


def check_text(value: Any, ctx: RowContext, field: str) -> list[Issue]:
    if value is None:
        return [_err(ctx, field, "is missing")]
    if not isinstance(value, str):
        return [_err(ctx, field, f"must be a string, not {type(value).__name__}")]
    return []


def _degenerate(ctx: RowContext, field: str, message: str, flag: str, flags: set[str]) -> Issue:
    """An issue for an empty or identical response: an error, or (policy "flag") a warning plus a flag."""
    if ctx.degenerate == "error":
        return _err(ctx, field, message)
    flags.add(flag)
    return Issue(ctx.file, ctx.line, ctx.name(field), f"{message} (kept, flagged {flag})", "warning")


def parse_label(value: Any, ctx: RowContext, field: str = "label") -> tuple[Label | None, list[Issue]]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, [_err(ctx, field, "is missing")]
    label = LABEL_ALIASES.get(value.strip().lower()) if isinstance(value, str) else None
    if label is None:
        allowed = ", ".join(label.value for label in Label)
        return None, [_err(ctx, field, f"unknown label {value!r}; expected one of {allowed}")]
    return label, []


def parse_strength(value: Any, ctx: RowContext, field: str = "strength") -> tuple[Strength | None, list[Issue]]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, []
    try:
        return Strength(str(value).strip().lower()), []
    except ValueError:
        allowed = ", ".join(s.value for s in Strength)
        return None, [_err(ctx, field, f"unknown strength {value!r}; expected one of {allowed} or empty")]


def check_timestamp(value: Any, ctx: RowContext) -> tuple[str, list[Issue]]:
    if value is None or value == "":
        return now_iso(), []
    if isinstance(value, datetime):
        return value.isoformat(), []
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
            return value, []
        except ValueError:
            pass
    return str(value), [_err(ctx, "timestamp", f"{value!r} is not an ISO 8601 date-time")]


def _or_default(value: Any, default: str | None) -> Any:
    """The row's value, or the import's default where the row has none (an empty cell counts as none)."""
    return default if value is None or value == "" else value


def build_record(row: Mapping[str, Any], ctx: RowContext) -> tuple[PreferenceRecord | None, list[Issue]]:
    """Validate `row` (keys: prompt, response_a, response_b, label, strength?, annotator?, source?, timestamp?,
    item?, metadata?) and build the record. Returns (record or None, issues); warnings do not stop the record."""
    prompt, issues = check_prompt(row.get("prompt"), ctx)
    issues += check_text(row.get("response_a"), ctx, "response_a")
    issues += check_text(row.get("response_b"), ctx, "response_b")
    label, label_issues = parse_label(row.get("label"), ctx)
    strength, strength_issues = parse_strength(row.get("strength"), ctx)
    timestamp, time_issues = check_timestamp(row.get("timestamp"), ctx)
    issues += label_issues + strength_issues + time_issues

    annotator = _or_default(row.get("annotator"), ctx.default_annotator)
    source = _or_default(row.get("source"), ctx.default_source)
    for field, value in (("annotator", annotator), ("source", source)):
        if value is not None and not isinstance(value, str):
            issues.append(_err(ctx, field, f"must be a string, not {type(value).__name__}"))
        elif value is None or not value.strip():
            issues.append(_err(ctx, field, "is missing (give a column or a default)"))

    item = row.get("item")
    if item is not None and not isinstance(item, str | int) or isinstance(item, bool):
        issues.append(_err(ctx, "item", f"must be a string or integer id, not {type(item).__name__}"))
    metadata = row.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        issues.append(_err(ctx, "metadata", f"must be an object, not {type(metadata).__name__}"))
        metadata = {}
    metadata = dict(metadata)

    flags: set[str] = set(metadata.get("flags", []))
    if not issues:
        for field in ("response_a", "response_b"):
            if not row[field].strip():
                issues.append(_degenerate(ctx, field, "is empty", "empty_response", flags))
        if row["response_a"] == row["response_b"]:
            issues.append(_degenerate(ctx, "response_b", "is identical to the other response (no preference signal)",
                                      "identical_responses", flags))
    if flags:
        metadata["flags"] = sorted(flags)

    if any(issue.severity == "error" for issue in issues):
        return None, issues
    assert label is not None
    record = PreferenceRecord(
        prompt=prompt, response_a=row["response_a"], response_b=row["response_b"], label=label,
        strength=strength, annotator=annotator, source=source, timestamp=timestamp, metadata=metadata,
        item=None if item is None else str(item),
    )
    return record, issues
