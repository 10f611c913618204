"""Export preference judgments to TRL's dataset formats, with explicit, reported policies — nothing dropped silently.

- `to_pairs` -> reward / DPO rows: `prompt`, `chosen`, `rejected`, and `margin` when any judgment has a strength.
- `to_kto` -> KTO rows (unpaired): `prompt`, `completion`, `label` (True = desirable).

Judgments are first aggregated per pair (majority by default; `aggregate="none"` exports each judgment). Then:
- ties: "drop", or "margin0": the pair is emitted in both orders with margin 0 so the reward loss pulls the two
  rewards together (for KTO: both responses become desirable examples);
- both_bad: "drop", "tie" (treated as a tie, as above), or "negatives" (KTO only: both become undesirable examples);
- unresolved pairs (no consensus) and pairs flagged `identical_responses` / `differing_context` are dropped.
The `ExportReport` counts every row in and out, by reason.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from preference.aggregate import Consensus, aggregate
from preference.schema import Label, Message, PreferenceRecord
from rlhfkit.core.atomic import atomic_path, write_jsonl
from rlhfkit.core.errors import InputError

TiePolicy = Literal["drop", "margin0"]
BothBadPolicy = Literal["drop", "tie", "negatives"]
DROP_FLAGS = ("identical_responses", "differing_context")


@dataclasses.dataclass
class ExportPolicy:
    """How judgments become training rows. Every field is reported back in `ExportReport.policy`."""

    ties: TiePolicy = "drop"  # see module docstring
    both_bad: BothBadPolicy = "drop"  # see module docstring
    aggregate: Literal["majority", "unanimous", "weighted", "none"] = "majority"  # one label per pair, or "none"
    min_agreement: float = 0.0  # drop pairs whose consensus agreement is below this (0..1)
    drop_flags: tuple[str, ...] = DROP_FLAGS  # records carrying any of these flags are dropped


@dataclasses.dataclass
class ExportReport:
    policy: dict[str, Any]
    judgments_in: int = 0
    pairs_in: int = 0
    rows_out: int = 0
    dropped: Counter[str] = dataclasses.field(default_factory=Counter)
    kept: Counter[str] = dataclasses.field(default_factory=Counter)
    notes: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "judgments_in": self.judgments_in, "pairs_in": self.pairs_in,
                "rows_out": self.rows_out, "dropped": dict(self.dropped), "kept": dict(self.kept), "notes": self.notes}


def _consensus(records: list[PreferenceRecord], policy: ExportPolicy) -> list[Consensus]:
    if policy.aggregate == "none":
        return [Consensus(key=r.judgment_id, record=r, label=r.label, votes={r.label: 1}, n_judgments=1,
                          agreement=1.0, margin=r.margin(), annotators=[r.annotator]) for r in records]
    return aggregate(records, method=policy.aggregate, by="pair")


def _select(records: Iterable[PreferenceRecord], policy: ExportPolicy, paired: bool
            ) -> tuple[list[tuple[Consensus, Label]], ExportReport]:
    """Aggregate, apply the policies, and return (consensus, effective label) pairs to emit."""
    if policy.ties not in ("drop", "margin0"):
        raise InputError(f"ties policy must be 'drop' or 'margin0', not {policy.ties!r}")
    if policy.both_bad not in ("drop", "tie", "negatives"):
        raise InputError(f"both_bad policy must be 'drop', 'tie' or 'negatives', not {policy.both_bad!r}")
    if paired and policy.both_bad == "negatives":
        raise InputError("both_bad='negatives' needs unpaired (KTO) export; pairs can only 'drop' or treat as 'tie'")
    records = list(records)
    report = ExportReport(policy=dataclasses.asdict(policy), judgments_in=len(records))
    selected = []
    for item in _consensus(records, policy):
        report.pairs_in += 1
        flags = set(item.record.metadata.get("flags", [])) & set(policy.drop_flags)
        label = item.label
        if flags:
            report.dropped.update(f"flagged:{flag}" for flag in sorted(flags))
        elif label is None:
            report.dropped["unresolved"] += 1
        elif item.agreement < policy.min_agreement:
            report.dropped["below_min_agreement"] += 1
        elif label == Label.BOTH_BAD and policy.both_bad == "drop":
            report.dropped["both_bad"] += 1
        else:
            if label == Label.BOTH_BAD and policy.both_bad == "tie":
                label = Label.TIE
                report.kept["both_bad_as_tie"] += 1
            if label == Label.TIE and policy.ties == "drop":
                report.dropped["tie"] += 1
                continue
            report.kept[label.value] += 1
            selected.append((item, label))
    return selected, report


def _conversational(prompt: Any) -> list[Message]:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def _formatter(selected: list[tuple[Consensus, Label]], report: ExportReport):
    """TRL needs one prompt form per dataset: if any prompt is chat, all become chat (reported)."""
    chat = any(item.record.is_chat for item, _ in selected)
    if chat and not all(item.record.is_chat for item, _ in selected):
        report.notes.append("mixed text and chat prompts: text prompts exported as one user message")
    if chat:
        return _conversational, lambda text: [{"role": "assistant", "content": text}]
    return (lambda prompt: prompt), (lambda text: text)


def to_pairs(records: Iterable[PreferenceRecord], policy: ExportPolicy | None = None
             ) -> tuple[list[dict[str, Any]], ExportReport]:
    """Rows for TRL's RewardTrainer and DPOTrainer: prompt, chosen, rejected (+ margin)."""
    policy = policy or ExportPolicy()
    selected, report = _select(records, policy, paired=True)
    prompt_of, completion_of = _formatter(selected, report)
    with_margin = any(item.margin is not None for item, _ in selected)
    rows = []
    for item, label in selected:
        record = item.record
        if label == Label.TIE:
            orders = [(record.response_a, record.response_b, 0.0), (record.response_b, record.response_a, 0.0)]
        else:
            chosen, rejected = ((record.response_a, record.response_b) if label == Label.A
                                else (record.response_b, record.response_a))
            # No strength means TRL's own loss: a margin of 0.
            orders = [(chosen, rejected, item.margin or 0.0)]
        for chosen, rejected, margin in orders:
            row = {"prompt": prompt_of(record.prompt), "chosen": completion_of(chosen),
                   "rejected": completion_of(rejected)}
            if with_margin:
                row["margin"] = margin
            rows.append(row)
    report.rows_out = len(rows)
    return rows, report


def trainable_pairs(records: Iterable[PreferenceRecord], policy: ExportPolicy, learner: str
                    ) -> tuple[list[dict[str, Any]], ExportReport]:
    """`to_pairs` for a trainer that learns from preferences (`learner` names it in messages): ValueError when the
    data is empty, when the policies leave nothing, or when only ties are left (nothing to rank)."""
    records = list(records)
    if not records:
        raise InputError("no preference judgments to train on (the dataset is empty)")
    pairs, report = to_pairs(records, policy)
    if not pairs:
        raise InputError(f"no trainable pair: after aggregation and the tie/both-bad policies nothing is left "
                         f"(kept {dict(report.kept)}, dropped {dict(report.dropped)}); {learner} needs pairs "
                         "where one response is preferred")
    if not (report.kept.get("a") or report.kept.get("b")):
        raise InputError(f"only ties to train on: every kept pair says 'equally good', so there is nothing to rank; "
                         f"{learner} needs pairs where one response is preferred")
    return pairs, report


def to_kto(records: Iterable[PreferenceRecord], policy: ExportPolicy | None = None
           ) -> tuple[list[dict[str, Any]], ExportReport]:
    """Rows for TRL's KTOTrainer: prompt, completion, label (True = desirable)."""
    policy = policy or ExportPolicy()
    selected, report = _select(records, policy, paired=False)
    prompt_of, completion_of = _formatter(selected, report)
    rows = []
    for item, label in selected:
        record = item.record
        if label == Label.TIE:
            marks = [(record.response_a, True), (record.response_b, True)]
        elif label == Label.BOTH_BAD:  # policy "negatives"
            marks = [(record.response_a, False), (record.response_b, False)]
        else:
            marks = [(record.response_a, label == Label.A), (record.response_b, label == Label.B)]
        rows += [{"prompt": prompt_of(record.prompt), "completion": completion_of(text), "label": desirable}
                 for text, desirable in marks]
    report.rows_out = len(rows)
    return rows, report


def write_rows(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL (.jsonl) or Parquet (.parquet), atomically. `datasets.load_dataset` reads both."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".parquet"):
        raise InputError(f"{path}: export to .jsonl or .parquet")
    if suffix == ".jsonl":
        return write_jsonl(rows, path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    return path
