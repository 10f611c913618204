"""Pairs files: what annotators are asked to judge."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preference.errors import DataError
from preference.pairs import Pair, pairs_from_records, read_pairs, write_pairs
from preference.schema import Label, PreferenceRecord


def test_round_trip_and_text_prompts_that_look_like_json(tmp_path):
    pairs = [Pair("[INST] Say hi [/INST]", "hi", "hello"), Pair([{"role": "user", "content": "Q?"}], "a", "b",
                                                                 {"k": 1})]
    assert read_pairs(write_pairs(pairs, tmp_path / "p.jsonl")) == pairs
    table = pa.Table.from_pylist([{"prompt": "[3, 1, 2]", "response_a": "x", "response_b": "y", "metadata": None},
                                  {"prompt": json.dumps([{"role": "user", "content": "Q?"}]), "response_a": "x",
                                   "response_b": "y", "metadata": '{"k": 2}'}])
    pq.write_table(table, tmp_path / "p.parquet")
    first, second = read_pairs(tmp_path / "p.parquet")
    assert first.prompt == "[3, 1, 2]" and second.prompt == [{"role": "user", "content": "Q?"}]
    assert second.metadata == {"k": 2}


def test_bad_metadata_is_an_error_naming_the_line(tmp_path):
    table = pa.Table.from_pylist([{"prompt": "Q", "response_a": "x", "response_b": "y", "metadata": "{oops"}])
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(DataError) as caught:
        read_pairs(tmp_path / "p.parquet")
    (issue,) = caught.value.issues
    assert (issue.line, issue.field) == (1, "metadata") and "not valid JSON" in issue.message


def test_pairs_from_records_drop_display_facts():
    record = PreferenceRecord("Q", "a", "b", Label.A, "hh", "s",
                              metadata={"position_unknown": True, "shown_swapped": True, "flags": ["x"], "keep": 1})
    (pair,) = pairs_from_records([record, record])
    assert pair.metadata == {"keep": 1}
