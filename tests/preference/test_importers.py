"""Each importer on real files (HH-RLHF and PandaLM from ../shared/data) and on small hand-made ones."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preference.importers import ImportOptions, detect_format, read_preferences
from preference.importers.hh_rlhf import split_dialogue
from preference.schema import Label, pair_id
from tests.conftest import HH_PATH, PANDALM_PATH, needs


def records_of(path, **kwargs):
    return [record for result in read_preferences(path, **kwargs) for record in result.records]


def test_split_dialogue_keeps_turns_and_takes_the_last_answer():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Name a fruit.\n\nAssistant: An apple."
    prompt, answer = split_dialogue(text)
    assert prompt == [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
                      {"role": "user", "content": "Name a fruit."}]
    assert answer == "An apple."
    assert split_dialogue("no turns at all") is None


@needs(HH_PATH)
def test_hh_rlhf_test_split_imports_every_pair_and_flags_the_odd_ones():
    results = list(read_preferences(HH_PATH))
    records = [record for result in results for record in result.records]
    assert detect_format(HH_PATH) == "hh-rlhf"
    assert len(records) == 2354 and len({r.pair_id for r in records}) == 2354
    assert all(r.label == Label.A and r.is_chat and r.annotator == "hh-rlhf" for r in records)
    flags = [flag for r in records for flag in r.metadata.get("flags", [])]
    assert flags.count("identical_responses") == 2  # the shared data's README says 2
    assert flags.count("differing_context") == 9  # and 9 with different dialogue context
    assert not [issue for result in results for issue in result.issues if issue.severity == "error"]


@needs(PANDALM_PATH)
def test_pandalm_gives_one_judgment_per_annotator():
    records = records_of(PANDALM_PATH)
    raw = json.loads(PANDALM_PATH.read_text())
    assert detect_format(PANDALM_PATH) == "pandalm"
    assert len(records) == 3 * len(raw) == 2997
    by_item = {(r.item, r.annotator): r for r in records}
    for row in raw[:50]:
        for k in (1, 2, 3):
            record = by_item[(str(row["idx"]), f"pandalm:annotator{k}")]
            assert record.label == {1: Label.A, 2: Label.B, 0: Label.TIE}[row[f"annotator{k}"]]
            assert record.response_a == str(row["response1"])


def test_generic_csv_with_mapping_and_label_map(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text("question,left,right,winner,rater\nWhy?,Because.,No idea.,1,ann\nHow?,Slowly.,Fast.,0,bob\n")
    options = ImportOptions(mapping={"prompt": "question", "response_a": "left", "response_b": "right",
                                     "label": "winner", "annotator": "rater"}, label_map={"1": "a", "0": "tie"})
    records = records_of(path, options=options)
    assert [(r.label, r.annotator, r.source) for r in records] == [(Label.A, "ann", "prefs.csv"),
                                                                   (Label.TIE, "bob", "prefs.csv")]


def test_generic_parquet_with_chat_prompt_and_strength(tmp_path):
    path = tmp_path / "prefs.parquet"
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    pq.write_table(pa.Table.from_pylist([{"prompt": json.dumps(chat), "response_a": "Hello.", "response_b": "Yo.",
                                          "label": "b", "strength": "strong", "annotator": "x", "source": "s"}]), path)
    (record,) = records_of(path)
    assert record.prompt == chat and record.label == Label.B and record.margin() == 2.0


def test_trl_explicit_prompt_text(tmp_path):
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps({"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}) + "\n")
    (record,) = records_of(path)
    assert detect_format(path) == "trl"
    assert (record.prompt, record.response_a, record.response_b, record.label) == ("The sky is", " blue.",
                                                                                     " green.", Label.A)


def test_trl_implicit_prompt_conversational(tmp_path):
    path = tmp_path / "trl.jsonl"
    user = {"role": "user", "content": "What color is the sky?"}
    row = {"chosen": [user, {"role": "assistant", "content": "Blue."}],
           "rejected": [user, {"role": "assistant", "content": "Green."}]}
    path.write_text(json.dumps(row) + "\n")
    (record,) = records_of(path)
    assert record.prompt == [user] and (record.response_a, record.response_b) == ("Blue.", "Green.")


def test_trl_implicit_prompt_text_takes_the_common_beginning(tmp_path):
    """Like TRL's extract_prompt, the space before the first differing word goes to the completions."""
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps({"chosen": "Q: sky? A: blue", "rejected": "Q: sky? A: green"}) + "\n")
    (record,) = records_of(path)
    assert record.prompt == "Q: sky? A:" and (record.response_a, record.response_b) == (" blue", " green")


def test_pair_id_ignores_order_but_not_content():
    assert pair_id("p", "x", "y") == pair_id("p", "y", "x")
    assert pair_id("p", "x", "y") != pair_id("q", "x", "y") != pair_id("p", "x", "z")
    assert pair_id("p", "ab", "c") != pair_id("p", "a", "bc")


def test_unknown_columns_get_a_clear_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"foo": 1, "bar": 2}) + "\n")
    with pytest.raises(ValueError, match=r"cannot tell the format from its columns \(bar, foo\); pass --format"):
        list(read_preferences(path))
