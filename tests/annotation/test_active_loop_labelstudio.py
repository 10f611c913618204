"""The active loop with people: rounds pushed to a real Label Studio server, labels given through its API as a
person's account, pulled, and a real TRL reward model retrained (tiny encoder, real MiniLM tokenizer)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from annotation.labelstudio.accounts import invite
from annotation.labelstudio.client import KEY_ENV, URL_ENV, LabelStudioClient
from annotation.labelstudio.config import result_for
from annotation.labelstudio.sync import open_project
from preference.pairs import read_pairs, write_pairs
from preference.schema import Label, Strength
from preference.store import PreferenceStore
from reward.model import RewardModel
from rlhfkit.cli.annotate_loop import PENDING_EXIT
from rlhfkit.cli.main import app
from tests.labelstudio_support import make_pairs, requires_label_studio
from tests.tiny_models import save_tiny, tiny_encoder

pytestmark = [pytest.mark.integration, requires_label_studio()]


def label_open_tasks(person: LabelStudioClient, admin: LabelStudioClient, project_id: int, skip: int = 0) -> int:
    """The person labels every task nobody has labeled yet, the GOOD answer as shown; the first `skip` are cancelled
    (skipped), as a person unsure of them would. Returns how many tasks were labeled."""
    labeled = 0
    for task in admin.tasks(project_id):
        if task.get("annotations"):
            continue
        if skip:
            person.create_annotation(task["id"], [], was_cancelled=True)
            skip -= 1
            continue
        good = Label.A if task["data"]["answer_a"].startswith("GOOD") else Label.B
        person.create_annotation(task["id"], result_for(good, Strength.CLEAR))
        labeled += 1
    return labeled


def test_people_label_each_round_in_label_studio_and_the_loop_retrains(server, tmp_path, monkeypatch):
    admin = server.client()
    monkeypatch.setenv(URL_ENV, server.url)
    monkeypatch.setenv(KEY_ENV, server.credentials.token)
    model, tokenizer = tiny_encoder(hidden_size=32, num_layers=1)
    backbone = save_tiny(model, tokenizer, tmp_path / "backbone")
    (tmp_path / "reward.yaml").write_text(json.dumps({
        "model": str(backbone), "max_length": 64, "learning_rate": 1e-3, "num_train_epochs": 2,
        "per_device_train_batch_size": 8, "center_rewards_coefficient": None}))
    pool = make_pairs(14)
    write_pairs(pool, tmp_path / "pool.jsonl")
    store = tmp_path / "store"
    args = ["annotate", "loop", "--annotator", "labelstudio", "--project", "loop test", "--pool",
            str(tmp_path / "pool.jsonl"), "--store", str(store), "--out", str(tmp_path / "loop"),
            "--strategy", "uncertainty", "--rounds", "1", "--start", "6", "--budget", "4", "--ensemble", "1",
            "--min-labeled", "0.75", "--reward-config", str(tmp_path / "reward.yaml")]

    first = CliRunner().invoke(app, args, terminal_width=200)  # round 0 pushed; nobody has labeled yet
    assert first.exit_code == PENDING_EXIT, first.output
    assert "0 of 6 pairs" in first.output and "rerun" in first.output
    project = open_project(admin, "loop test")
    assert len(list(admin.tasks(project["id"]))) == 6 and not PreferenceStore.is_store(store)

    alice = LabelStudioClient(server.url, invite(admin, "alice@example.com").token)
    assert label_open_tasks(alice, admin, project["id"]) == 6
    second = CliRunner().invoke(app, args, terminal_width=200)  # round 0 trains; round 1 is pushed and waits
    assert second.exit_code == PENDING_EXIT, second.output
    assert (tmp_path / "loop" / "round-0" / "done.json").exists()
    records = list(PreferenceStore(store).records())
    assert len(records) == 6 and {r.annotator for r in records} == {"alice@example.com"}
    assert all((r.label == Label.A) == r.response_a.startswith("GOOD") for r in records)  # de-randomised
    chosen = read_pairs(tmp_path / "loop" / "round-1" / "selected.jsonl")
    tasks = list(admin.tasks(project["id"]))
    assert len(tasks) == 10 and {t["data"]["pair_id"] for t in tasks} >= {p.pair_id for p in chosen}

    assert label_open_tasks(alice, admin, project["id"], skip=1) == 3  # 3 of 4 meets --min-labeled 0.75
    third = CliRunner().invoke(app, args, terminal_width=200)
    assert third.exit_code == 0, third.output
    assert "round 1" in third.output
    done = json.loads((tmp_path / "loop" / "round-1" / "done.json").read_text())
    assert (done["selected"], done["labeled"], done["store_pairs"]) == (4, 3, 9)
    scores = RewardModel.load(done["model"]).score([p.prompt for p in pool], [p.response_a for p in pool])
    assert len(scores) == len(pool)  # the retrained model loads and scores
    records = list(PreferenceStore(store).records())
    assert len(records) == 9 and len({r.judgment_id for r in records}) == 9  # no judgment stored twice
    assert len(list(admin.tasks(project["id"]))) == 10  # finished: nothing pushed again
