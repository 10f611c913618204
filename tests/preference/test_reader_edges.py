"""Edge cases of the readers and importers: bad bytes, huge fields, truncation, BOMs, look-alike JSON, float labels,
format detection errors and message wording. Each problem names file, line and field; the other rows survive."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preference.importers import ImportOptions, detect_format, read_preferences
from preference.importers.base import container_of
from preference.readers import columns_of, read_csv, read_json_array
from preference.schema import Label

BOM = b"\xef\xbb\xbf"
HEADER = ["prompt", "response_a", "response_b", "label", "annotator", "source"]


def row(i: int, **changes) -> dict:
    data = {"prompt": f"Question {i}?", "response_a": f"Answer {i} one.", "response_b": f"Answer {i} two.",
            "label": "a", "annotator": "alice", "source": "test"}
    data.update(changes)
    return data


def csv_text(rows: list[dict], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def results_of(path: Path, **kwargs) -> list:
    return list(read_preferences(path, **kwargs))


def errors_of(results: list) -> list:
    return [issue for result in results for issue in result.issues if issue.severity == "error"]


# 1. invalid UTF-8 in CSV -------------------------------------------------------------------------------------------

def test_csv_bad_byte_is_reported_at_its_row_and_the_rest_is_read(tmp_path):
    """1000 rows; row 3 holds a quoted value with newlines (so rows and lines part ways); a bad byte on line 500."""
    lines, starts = [",".join(HEADER)], {}
    for i in range(1000):
        starts[i] = len(lines) + 1
        if i == 3:
            lines += ['"Question 3?', "second line", 'third line",Answer 3 one.,Answer 3 two.,a,alice,test']
        else:
            lines.append(f"Question {i}?,Answer {i} one.,Answer {i} two.,a,alice,test")
    bad_row = next(i for i, start in starts.items() if start == 500)
    good = f"Answer {bad_row} two.".encode()
    text = ("\n".join(lines) + "\n").encode().replace(good, good[:-3] + b"\xe9o.")  # a Latin-1 byte
    path = tmp_path / "p.csv"
    path.write_bytes(text)

    results = results_of(path)
    assert len(results) == 1000
    bad = [r for r in results if not r.ok]
    assert [(r.line, r.issues[0].field) for r in bad] == [(500, "response_b")]
    assert "invalid UTF-8" in bad[0].issues[0].message
    good = [r for r in results if r.ok]
    assert len(good) == 999
    for result in good:
        i = int(result.records[0].response_a.split()[1])
        assert result.line == starts[i]
    assert results[3].records[0].prompt == "Question 3?\nsecond line\nthird line"


def test_csv_bad_byte_in_the_header(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"prompt,resp\xffonse_a,response_b,label\nq,a,b,a\n")
    issues = [i for r in results_of(path, format="rlhfkit") for i in r.issues]
    assert issues[0].line == 1 and "invalid UTF-8" in issues[0].message


# 2. CSV fields over the limit --------------------------------------------------------------------------------------

def test_csv_field_over_128_kib_is_read_under_the_default_limit(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(csv_text([row(1, response_a="x" * 300_000), row(2)]))
    results = results_of(path)
    assert [r.ok for r in results] == [True, True]
    assert len(results[0].records[0].response_a) == 300_000


@pytest.mark.parametrize("quoted", [False, True])
def test_csv_field_over_the_limit_is_reported_and_the_next_rows_are_read(tmp_path, quoted):
    big = "y" * 5000 if not quoted else "line\n" * 1000  # quoted: a value spanning 1000 lines
    path = tmp_path / "p.csv"
    path.write_text(csv_text([row(1), row(2, response_b=big), row(3), row(4, prompt="multi\nline")]))
    results = results_of(path, options=ImportOptions(max_line_bytes=1000))
    assert [r.ok for r in results] == [True, False, True, True]
    (issue,) = results[1].issues
    assert (issue.line, issue.field) == (3, "response_b") and "limit" in issue.message
    after = 3 + (1000 if quoted else 0) + 1
    assert [r.line for r in results[2:]] == [after, after + 1]
    assert results[3].records[0].prompt == "multi\nline"


def test_csv_quoted_field_never_closed_stops_with_a_clear_message(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(csv_text([row(1)]) + 'q,"' + "z" * 3000 + "\n" + "more\n" * 10)
    results = results_of(path, options=ImportOptions(max_line_bytes=1000))
    assert results[0].ok and len(results) == 2
    (issue,) = results[1].issues
    assert (issue.line, issue.field) == (3, "response_a")
    assert "never closed" in issue.message


def test_csv_quote_open_at_the_end_of_the_file_is_reported(tmp_path):
    """Without a size limit hit, the parser silently swallows row 4 into row 3's value."""
    path = tmp_path / "p.csv"
    path.write_text(csv_text([row(1)]) + 'q2,"a2,b2,a,alice,test\n' + csv_text([row(3)]).split("\n", 1)[1])
    results = results_of(path)
    assert [r.ok for r in results] == [True, False]
    (issue,) = results[1].issues
    assert (issue.line, issue.field) == (3, "response_a") and "never closed" in issue.message


def test_read_csv_takes_the_limit(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(csv_text([row(1, prompt="p" * 2000)]))
    (raw,) = read_csv(path, max_field_bytes=1000)
    assert raw.issue is not None and raw.issue.field == "prompt"


# 3. JSON array cut at an element boundary --------------------------------------------------------------------------

@pytest.mark.parametrize("cut", [",", ",\n  ", "", "\n"])
def test_json_array_truncated_between_elements_is_reported(tmp_path, cut):
    text = "[\n" + json.dumps(row(1)) + ",\n" + json.dumps(row(2)) + cut
    path = tmp_path / "p.json"
    path.write_text(text)
    results = results_of(path, format="rlhfkit")
    assert [r.ok for r in results] == [True, True, False]
    (issue,) = results[-1].issues
    assert issue.message == "file is truncated: the JSON array is not closed"
    assert issue.line == 3


def test_json_array_with_only_an_opening_bracket(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("[\n")
    (raw,) = read_json_array(path)
    assert raw.issue is not None and "not closed" in raw.issue.message


def test_json_text_after_the_array_is_reported(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([row(1)]) + "\n" + json.dumps([row(2)]))
    results = results_of(path, format="rlhfkit")
    assert results[0].ok and not results[-1].ok and results[-1].line == 2


# 4. byte order marks -----------------------------------------------------------------------------------------------

def test_bom_is_accepted_in_csv_jsonl_and_json(tmp_path):
    paths = {"p.csv": csv_text([row(1), row(2)]),
             "p.jsonl": json.dumps(row(1)) + "\n" + json.dumps(row(2)) + "\n",
             "p.json": json.dumps([row(1), row(2)], indent=1)}
    for name, text in paths.items():
        path = tmp_path / name
        path.write_bytes(BOM + text.encode())
        assert detect_format(path) == "rlhfkit", name
        results = results_of(path)
        assert [r.ok for r in results] == [True, True], (name, results)
        assert results[0].records[0].prompt == "Question 1?"
        assert results[0].line == (2 if name == "p.csv" else 1 if name == "p.jsonl" else 2)


# 5. text prompts that look like JSON -------------------------------------------------------------------------------

TEXT_PROMPTS = ["[INST] Say hi [/INST]", "[3, 1, 2]", '{"name":"x"}', "[]", '[{"role": "user"}]']


@pytest.mark.parametrize("prompt", TEXT_PROMPTS)
@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_text_prompts_starting_with_a_bracket_stay_text(tmp_path, prompt, kind):
    path = tmp_path / f"p.{kind}"
    rows = [row(1, prompt=prompt)]
    if kind == "jsonl":
        path.write_text(json.dumps(rows[0]) + "\n")
    elif kind == "csv":
        path.write_text(csv_text(rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    (result,) = results_of(path)
    assert result.ok, result.issues
    assert result.records[0].prompt == prompt


def test_jsonl_never_decodes_a_string_prompt(tmp_path):
    chat = json.dumps([{"role": "user", "content": "Hi"}])
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row(1, prompt=chat)) + "\n")
    (record,) = [r for result in results_of(path) for r in result.records]
    assert record.prompt == chat


def test_csv_chat_prompt_and_prompt_messages_are_decoded(tmp_path):
    chat = [{"role": "user", "content": "Hi"}]
    path = tmp_path / "p.csv"
    second = {**row(2), "prompt": "", "prompt_messages": json.dumps(chat)}
    path.write_text(csv_text([row(1, prompt=json.dumps(chat)), second], [*HEADER, "prompt_messages"]))
    results = results_of(path)
    assert [r.records[0].prompt for r in results] == [chat, chat]


def test_csv_prompt_messages_that_is_not_json_is_an_error(tmp_path):
    path = tmp_path / "p.csv"
    first = {key: value for key, value in row(1).items() if key != "prompt"}
    path.write_text(csv_text([{**first, "prompt_messages": "[INST] hi"}], ["prompt_messages", *HEADER[1:]]))
    (error,) = errors_of(results_of(path))
    assert error.field == "prompt_messages" and "JSON" in error.message


@pytest.mark.parametrize("metadata,ok", [('{"k": 1}', True), ("[1, 2]", False), ("not json", False)])
def test_csv_metadata_must_be_a_json_object(tmp_path, metadata, ok):
    path = tmp_path / "p.csv"
    path.write_text(csv_text([row(1, metadata=metadata)], [*HEADER, "metadata"]))
    (result,) = results_of(path)
    assert result.ok is ok
    if ok:
        assert result.records[0].metadata == {"k": 1}
    else:
        assert [issue.field for issue in result.issues] == ["metadata"]


# 6. float labels ---------------------------------------------------------------------------------------------------

def test_parquet_float_labels_written_by_pandas_match_the_label_map(tmp_path):
    path = tmp_path / "p.parquet"
    frame = pd.DataFrame([row(1, label=1), row(2, label=None), row(3, label=2)])
    frame.to_parquet(path)
    assert pq.read_schema(path).field("label").type == pa.float64()
    results = results_of(path, options=ImportOptions(label_map={"1": "a", "2": "b"}))
    assert [r.ok for r in results] == [True, False, True]
    assert [r.records[0].label for r in results if r.ok] == [Label.A, Label.B]
    assert errors_of(results)[0].field == "label"


def test_pandalm_float_annotator_values(tmp_path):
    path = tmp_path / "p.json"
    item = {"idx": 1, "instruction": "Say hi.", "input": "", "response1": "Hi.", "response2": "Hello.",
            "annotator1": 1.0, "annotator2": 2.0, "annotator3": 0.0}
    path.write_text(json.dumps([item]))
    (result,) = results_of(path)
    assert result.ok and [r.label for r in result.records] == [Label.A, Label.B, Label.TIE]
    item["annotator1"] = 1.5
    path.write_text(json.dumps([item]))
    (error,) = errors_of(results_of(path))
    assert error.field == "annotator1" and "1.5" in error.message


# 7. TRL implicit text prompt keeps words whole ---------------------------------------------------------------------

@pytest.mark.parametrize("chosen,rejected,expected", [
    ("The sky is blue today.", "The sky is bright today.", ("The sky is", " blue today.", " bright today.")),
    ("Q: sky? A: blue", "Q: sky? A: green", ("Q: sky? A:", " blue", " green")),
    ("Say:\n\nyes", "Say:\n\nno", ("Say:", "\n\nyes", "\n\nno")),
    ("天空是蓝色的", "天空是绿色的", ("天空是", "蓝色的", "绿色的")),  # no spaces at all: TRL's split
])
def test_trl_implicit_text_prompt_keeps_words_whole(tmp_path, chosen, rejected, expected):
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps({"chosen": chosen, "rejected": rejected}) + "\n")
    (record,) = [r for result in results_of(path) for r in result.records]
    assert (record.prompt, record.response_a, record.response_b) == expected


# 8. detection surfaces the real read error -------------------------------------------------------------------------

def _gz_truncated(path: Path) -> None:
    full = gzip.compress(("\n".join(json.dumps(row(i)) for i in range(50)) + "\n").encode())
    path.write_bytes(full[:20])


@pytest.mark.parametrize("name,content,expected", [
    ("p.json", json.dumps(row(1)), "expected a JSON array of objects"),
    ("p.json", json.dumps(row(1)) + "\n" + json.dumps(row(2)) + "\n", "expected a JSON array of objects"),
    ("p.json", "42", "expected a JSON array of objects"),
    ("p.json", "", "empty"),
    ("p.jsonl", "", "empty"),
    ("p.csv", "", "empty"),
    ("p.jsonl.gz", None, "truncated"),
    ("p.jsonl.gz", b"\x1f\x8bnot really gzip at all", "truncated or corrupt"),
    ("p.csv.gz", b"\x1f\x8bnot really gzip at all", "truncated or corrupt"),
    ("p.json.gz", b"\x1f\x8bnot really gzip at all", "truncated or corrupt"),
    ("p.parquet", b"PAR1 this is not parquet", "Parquet"),
    ("p.csv", b"\xff\xfe\x00\x00", "invalid UTF-8"),
])
def test_detection_reports_the_read_error(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is None:
        _gz_truncated(path)
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError) as caught:
        detect_format(path)
    message = str(caught.value)
    assert expected in message and str(path) in message and "(none)" not in message
    with pytest.raises(ValueError, match="."):
        columns_of(path, container_of(path))


def test_jsonl_saved_as_json_says_what_to_do(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(row(1)) + "\n" + json.dumps(row(2)) + "\n")
    with pytest.raises(ValueError, match=r"\.jsonl"):
        detect_format(path)


def test_damaged_parquet_reports_the_bad_row_group_and_keeps_the_others(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([row(i, response_a=f"Answer {i} one. " * 5) for i in range(300)]), path,
                   row_group_size=100)
    column = pq.ParquetFile(path).metadata.row_group(1).column(1)
    data = bytearray(path.read_bytes())
    middle = column.data_page_offset + column.total_compressed_size // 2
    data[middle:middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    results = results_of(path)
    assert sum(r.ok for r in results) == 200
    (bad,) = [r for r in results if not r.ok]
    assert bad.line == 101 and "rows 101-200" in bad.issues[0].message
    assert [r.line for r in results if r.ok][100] == 201


# 9. message wording ------------------------------------------------------------------------------------------------

def test_annotator_of_the_wrong_type(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row(1, annotator=7)) + "\n")
    (error,) = errors_of(results_of(path))
    assert error.field == "annotator" and error.message == "must be a string, not int"


def test_identical_responses_message_names_no_position(tmp_path):
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps({"prompt": "Q?", "chosen": "Same.", "rejected": "Same."}) + "\n")
    (error,) = errors_of(results_of(path))
    assert error.field == "rejected" and "identical to the other response" in error.message
    assert "response_a" not in error.message


def test_unknown_extension_message_offers_no_missing_option(tmp_path):
    with pytest.raises(ValueError) as caught:
        container_of(tmp_path / "p.txt")
    assert "explicitly" not in str(caught.value)


def test_a_folder_is_not_a_file(tmp_path):
    for call in (lambda: detect_format(tmp_path), lambda: read_preferences(tmp_path)):
        with pytest.raises(ValueError, match="is a folder, not a file"):
            call()
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_preferences(tmp_path / "absent.jsonl")


# 10. position unknown ----------------------------------------------------------------------------------------------

def test_hh_and_trl_records_mark_the_position_unknown(tmp_path):
    hh = tmp_path / "hh.jsonl"
    hh.write_text(json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.",
                              "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}) + "\n")
    trl = tmp_path / "trl.jsonl"
    trl.write_text(json.dumps({"prompt": "Q?", "chosen": "Yes.", "rejected": "No."}) + "\n")
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps(row(1)) + "\n")
    marks = {path.name: [r.metadata.get("position_unknown") for res in results_of(path) for r in res.records]
             for path in (hh, trl, own)}
    assert marks == {"hh.jsonl": [True], "trl.jsonl": [True], "own.jsonl": [None]}
