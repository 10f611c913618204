"""Bad input gets a clear message naming file, line and field, and valid rows are never lost."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from preference.errors import DataError
from preference.importers import ImportOptions, read_preferences
from preference.ingest import import_file
from preference.store import PreferenceStore


def good_row(i: int, **changes) -> dict:
    row = {"prompt": f"Question {i}?", "response_a": f"Answer {i} one.", "response_b": f"Answer {i} two.",
           "label": "a", "annotator": "alice", "source": "test"}
    row.update(changes)
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def issues_of(path: Path, **kwargs) -> list:
    return [issue for result in read_preferences(path, **kwargs) for issue in result.issues]


def test_missing_field_names_file_line_and_field(tmp_path):
    row = good_row(2)
    del row["response_b"]
    path = write_jsonl(tmp_path / "p.jsonl", [good_row(1), row])
    (issue,) = issues_of(path)
    assert (issue.file, issue.line, issue.field) == (str(path), 2, "response_b")
    assert "missing" in issue.message
    assert str(issue).startswith(f"{path}:2 [response_b]")


def test_wrong_type(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [good_row(1, response_a=42)])
    (issue,) = issues_of(path)
    assert issue.field == "response_a" and "must be a string, not int" in issue.message


@pytest.mark.parametrize("changes,field,text", [
    ({"response_b": "   "}, "response_b", "is empty"),
    ({"response_b": "Answer 1 one."}, "response_b", "identical"),
    ({"label": "left"}, "label", "unknown label 'left'"),
    ({"strength": "huge"}, "strength", "unknown strength 'huge'"),
    ({"prompt": [{"role": "robot", "content": "hi"}]}, "prompt[0].role", "'robot' is not one of"),
])
def test_row_errors(tmp_path, changes, field, text):
    path = write_jsonl(tmp_path / "p.jsonl", [good_row(1, **changes)])
    errors = [issue for issue in issues_of(path) if issue.severity == "error"]
    assert [issue.field for issue in errors] == [field]
    assert text in errors[0].message and errors[0].line == 1


def test_degenerate_rows_can_be_flagged_instead(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [good_row(1, response_b="Answer 1 one.")])
    (result,) = read_preferences(path, options=ImportOptions(degenerate="flag"))
    assert result.ok and result.records[0].metadata["flags"] == ["identical_responses"]


def test_invalid_utf8_is_reported_and_other_rows_survive(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [json.dumps(good_row(1)).encode(), b'{"prompt": "caf\xe9"}', json.dumps(good_row(3)).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    results = list(read_preferences(path))
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].issues[0].line == 2 and "invalid UTF-8" in results[1].issues[0].message


def test_truncated_gzip_keeps_rows_before_the_cut(tmp_path):
    full = gzip.compress(("\n".join(json.dumps(good_row(i)) for i in range(200)) + "\n").encode())
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    results = list(read_preferences(path))
    assert results[-1].issues and "truncated" in results[-1].issues[0].message
    good = [r for r in results if r.ok]
    assert len(good) >= 1 and len(good) == results[-1].issues[0].line - 1


def test_fifty_mebibyte_line_is_skipped_not_loaded(tmp_path):
    path = tmp_path / "p.jsonl"
    with open(path, "w") as handle:
        handle.write(json.dumps(good_row(1)) + "\n")
        handle.write(json.dumps(good_row(2, response_a="x" * (50 * 1024 * 1024))) + "\n")
        handle.write(json.dumps(good_row(3)) + "\n")
    results = list(read_preferences(path))
    assert [r.ok for r in results] == [True, False, True]
    issue = results[1].issues[0]
    assert issue.line == 2 and "50.0 MiB, over the 8.0 MiB limit" in issue.message


def test_csv_with_missing_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,response_a,label\nq,a,a\n")
    (issue,) = issues_of(path)
    assert (issue.line, issue.field) == (1, "response_b") and "missing from the header" in issue.message


def test_mapped_column_names_appear_in_messages(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("question,left,right,winner\nq,,b,1\n")
    options = ImportOptions(mapping={"prompt": "question", "response_a": "left", "response_b": "right",
                                     "label": "winner"}, label_map={"1": "a"}, annotator="bob")
    errors = [i for i in issues_of(path, options=options) if i.severity == "error"]
    assert [(e.line, e.field) for e in errors] == [(2, "left")]


def test_fail_mode_imports_nothing_and_lists_every_problem(tmp_path):
    store = PreferenceStore(tmp_path / "store")
    store.append(read_preferences(write_jsonl(tmp_path / "ok.jsonl", [good_row(0)])).__next__().records)
    before = store.table()
    bad = write_jsonl(tmp_path / "p.jsonl", [good_row(1), good_row(2, label="?"), good_row(3, response_a=None)])
    with pytest.raises(DataError) as caught:
        import_file(bad, store)
    assert [(i.line, i.field) for i in caught.value.issues] == [(2, "label"), (3, "response_a")]
    assert store.table().equals(before)


def test_quarantine_imports_valid_rows_and_keeps_rejected_with_reasons(tmp_path):
    rows = [good_row(1), good_row(2, label="?"), "{not json", good_row(4)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    store = PreferenceStore(tmp_path / "store")
    report = import_file(path, store, on_error="quarantine", quarantine_path=tmp_path / "rejected.jsonl")
    assert report.records_imported == 2 and report.rows_rejected == 2 and len(store) == 2
    rejected = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [entry["line"] for entry in rejected] == [2, 3]
    assert rejected[0]["issues"][0]["field"] == "label" and '"label": "?"' in rejected[0]["raw"]
    assert "not valid JSON" in rejected[1]["issues"][0]["message"] and rejected[1]["raw"] == "{not json"


def test_json_array_reports_elements_at_their_line(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([good_row(1), good_row(2, label=7)], indent=2))
    errors = [i for i in issues_of(path) if i.severity == "error"]
    assert len(errors) == 1 and errors[0].field == "label"
    assert path.read_text().splitlines()[errors[0].line - 1].strip() == "{"
