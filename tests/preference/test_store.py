"""The preference store: appends never rewrite, edits supersede, crashes leave it as it was, loads as a Dataset."""

from __future__ import annotations

import dataclasses
import os

import pytest
from datasets import Dataset

import preference.store as store_module
from preference.schema import COLUMNS, Label, PreferenceRecord, Strength
from preference.store import PreferenceStore, StoreError, load_preferences, replace_preferences, save_preferences


def record(i: int, annotator: str = "alice", label: Label = Label.A, **changes) -> PreferenceRecord:
    base = PreferenceRecord(prompt=f"Q{i}", response_a=f"A{i}", response_b=f"B{i}", label=label,
                            annotator=annotator, source="test", strength=Strength.CLEAR, metadata={"i": i})
    return dataclasses.replace(base, **changes)


def test_round_trip_and_dataset(tmp_path):
    chat = [{"role": "user", "content": "Hi"}]
    records = [record(1), record(2, annotator="bob", label=Label.TIE, strength=None), record(3, prompt=chat)]
    save_preferences(records, tmp_path / "s")
    assert list(PreferenceStore(tmp_path / "s").records()) == records
    dataset = load_preferences(tmp_path / "s")
    assert isinstance(dataset, Dataset) and dataset.column_names == list(COLUMNS) and len(dataset) == 3
    assert dataset[2]["prompt"] is None and dataset[2]["prompt_messages"] == '[{"content":"Hi","role":"user"}]'


def test_appends_never_rewrite_old_shards(tmp_path):
    store = PreferenceStore(tmp_path / "s")
    store.append([record(1), record(2)])
    (first,) = store.shard_paths()
    stat, data = os.stat(first), first.read_bytes()
    store.append([record(3)])
    assert len(store.shard_paths()) == 2 and len(store) == 3
    assert os.stat(first).st_ino == stat.st_ino and first.read_bytes() == data


def test_an_edited_judgment_supersedes_the_old_one_and_others_stay(tmp_path):
    store = PreferenceStore(tmp_path / "s")
    store.append([record(1), record(1, annotator="bob")])
    store.append([record(1, label=Label.B)])  # alice changed her mind
    labels = {(r.annotator, r.label) for r in store.records()}
    assert labels == {("alice", Label.B), ("bob", Label.A)}


def test_a_crash_mid_append_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "SHARD_ROWS", 2)  # several shards get written before the crash
    store = PreferenceStore(tmp_path / "s")
    store.append([record(0)])
    before = store.table()

    def crashing():
        for i in range(1, 6):
            yield record(i)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.append(crashing())
    assert store.table().equals(before)
    assert sorted(p.name for p in (tmp_path / "s" / "data").iterdir()) == [store.shard_paths()[0].name]


def test_a_shard_written_without_its_manifest_is_invisible_then_cleaned(tmp_path):
    store = PreferenceStore(tmp_path / "s")
    store.append([record(0)])
    orphan = tmp_path / "s" / "data" / "part-00099-deadbeef.parquet"
    orphan.write_bytes(store.shard_paths()[0].read_bytes())  # as if killed before the manifest swap
    assert len(store) == 1
    store.append([record(1)])
    assert not orphan.exists() and len(store) == 2


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="not a preference store"):
        load_preferences(tmp_path)
    (tmp_path / "store.json").write_text('{"format": "something-else"}')
    with pytest.raises(StoreError, match="not an rlhfkit preference store"):
        PreferenceStore(tmp_path).table()


def test_save_refuses_to_overwrite(tmp_path):
    save_preferences([record(1)], tmp_path / "s")
    with pytest.raises(StoreError, match="already exists"):
        save_preferences([record(2)], tmp_path / "s")


def test_replacing_a_store_swaps_it_whole_or_leaves_the_old_one(tmp_path):
    path = tmp_path / "label" / "store"
    save_preferences([record(i) for i in range(3)], path)

    def half_then_crash(tmp: PreferenceStore) -> None:
        tmp.append([record(10)])
        raise KeyboardInterrupt  # cut short after writing part of the new store

    with pytest.raises(KeyboardInterrupt):
        replace_preferences(path, half_then_crash)
    assert sorted(r.pair_id for r in PreferenceStore(path).records()) == sorted(record(i).pair_id for i in range(3))

    replace_preferences(path, lambda tmp: tmp.append([record(7), record(8)]))
    assert sorted(r.pair_id for r in PreferenceStore(path).records()) == sorted([record(7).pair_id,
                                                                                 record(8).pair_id])
    assert sorted(p.name for p in path.parent.iterdir()) == ["store"]  # no temporary or old folder left behind


def test_datasets_load_dataset_reads_the_current_view_and_history_keeps_every_edit(tmp_path):
    from datasets import load_dataset

    store = PreferenceStore(tmp_path / "prefs")
    store.append([record(1), record(2)])
    store.append([record(1, label=Label.B)])  # alice changed her mind about pair 1
    current = load_dataset(str(tmp_path / "prefs"), split="train")
    assert len(current) == 2 and sorted(current["label"]) == ["a", "b"]  # the superseded judgment is gone
    assert current.to_list() == load_preferences(tmp_path / "prefs").to_list()
    history = load_dataset(str(tmp_path / "prefs"), "history", split="train")
    assert len(history) == 3
    card = (tmp_path / "prefs" / "README.md").read_text()
    assert "2 current judgments of 2 pairs" in card and "1 earlier judgment(s) were superseded" in card


def test_load_dataset_never_serves_a_cached_older_view_of_the_same_folder(tmp_path):
    from datasets import load_dataset

    path = tmp_path / "prefs"
    save_preferences([record(1), record(2)], path)
    assert sorted(load_dataset(str(path), split="train")["prompt"]) == ["Q1", "Q2"]
    replace_preferences(path, lambda tmp: tmp.append([record(3), record(4)]))  # same folder, same row count
    assert sorted(load_dataset(str(path), split="train")["prompt"]) == ["Q3", "Q4"]
    assert len(list((path / "current").iterdir())) == 1  # the older view's file is gone
