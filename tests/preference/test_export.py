"""Exports to TRL formats: tie / both_bad policies are explicit and every dropped pair is counted."""

from __future__ import annotations

import pytest
from trl.data_utils import is_conversational

from preference.export import ExportPolicy, to_kto, to_pairs, write_rows
from preference.schema import Label, PreferenceRecord, Strength


def judge(i: int, label: Label, annotator: str = "ann", strength: Strength | None = None, **kw) -> PreferenceRecord:
    return PreferenceRecord(prompt=kw.pop("prompt", f"Q{i}"), response_a=f"A{i}", response_b=f"B{i}", label=label,
                            annotator=annotator, source="t", strength=strength, **kw)


RECORDS = [
    judge(1, Label.A, strength=Strength.STRONG),
    judge(2, Label.B),
    judge(3, Label.TIE),
    judge(4, Label.BOTH_BAD),
    judge(5, Label.A, "x"), judge(5, Label.B, "y"),  # no majority
    judge(6, Label.A, metadata={"flags": ["identical_responses"]}),
]


def test_pairs_default_policy_drops_ties_both_bad_unresolved_and_flagged():
    rows, report = to_pairs(RECORDS)
    assert rows == [{"prompt": "Q1", "chosen": "A1", "rejected": "B1", "margin": 2.0},
                    {"prompt": "Q2", "chosen": "B2", "rejected": "A2", "margin": 0.0}]
    assert report.pairs_in == 6 and report.rows_out == 2
    assert dict(report.dropped) == {"tie": 1, "both_bad": 1, "unresolved": 1, "flagged:identical_responses": 1}


def test_ties_margin0_emit_both_orders_and_both_bad_can_be_a_tie():
    rows, report = to_pairs(RECORDS, ExportPolicy(ties="margin0", both_bad="tie"))
    symmetric = [row for row in rows if row["prompt"] in ("Q3", "Q4")]
    assert symmetric == [{"prompt": "Q3", "chosen": "A3", "rejected": "B3", "margin": 0.0},
                         {"prompt": "Q3", "chosen": "B3", "rejected": "A3", "margin": 0.0},
                         {"prompt": "Q4", "chosen": "A4", "rejected": "B4", "margin": 0.0},
                         {"prompt": "Q4", "chosen": "B4", "rejected": "A4", "margin": 0.0}]
    assert report.kept["both_bad_as_tie"] == 1 and report.rows_out == 6


def test_no_margin_column_without_any_strength():
    rows, _ = to_pairs([judge(1, Label.A), judge(2, Label.B)])
    assert all(set(row) == {"prompt", "chosen", "rejected"} for row in rows)


def test_negatives_only_for_kto():
    with pytest.raises(ValueError, match="KTO"):
        to_pairs(RECORDS, ExportPolicy(both_bad="negatives"))
    rows, report = to_kto(RECORDS, ExportPolicy(ties="margin0", both_bad="negatives"))
    by_prompt = {}
    for row in rows:
        by_prompt.setdefault(row["prompt"], []).append((row["completion"], row["label"]))
    assert by_prompt["Q1"] == [("A1", True), ("B1", False)]
    assert by_prompt["Q3"] == [("A3", True), ("B3", True)]
    assert by_prompt["Q4"] == [("A4", False), ("B4", False)]
    assert "Q5" not in by_prompt and report.dropped["unresolved"] == 1


def test_majority_and_minimum_agreement():
    records = [judge(1, Label.A, "x"), judge(1, Label.A, "y"), judge(1, Label.B, "z")]
    rows, _ = to_pairs(records)
    assert [row["chosen"] for row in rows] == ["A1"]
    rows, report = to_pairs(records, ExportPolicy(min_agreement=0.9))
    assert rows == [] and report.dropped["below_min_agreement"] == 1
    rows, _ = to_pairs(records, ExportPolicy(aggregate="none"))
    assert len(rows) == 3


def test_chat_prompts_export_in_trl_conversational_form(tmp_path):
    chat = [{"role": "user", "content": "Hi?"}]
    rows, report = to_pairs([judge(1, Label.A, prompt=chat), judge(2, Label.B)])
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "A1"}]
    assert rows[1]["prompt"] == [{"role": "user", "content": "Q2"}] and report.notes
    assert all(is_conversational(row) for row in rows)
    from datasets import load_dataset

    write_rows(rows, tmp_path / "out.jsonl")
    write_rows(rows, tmp_path / "out.parquet")
    for name in ("out.jsonl", "out.parquet"):
        loaded = load_dataset(name.split(".")[1].replace("jsonl", "json"), data_files=str(tmp_path / name),
                              split="train")
        assert loaded.to_list() == rows
