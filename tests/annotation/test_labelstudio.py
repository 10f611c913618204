"""The human-annotation round trip on a real Label Studio server (started here, stopped with SIGTERM)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from annotation.labelstudio.accounts import invite
from annotation.labelstudio.client import LabelStudioAuthError, LabelStudioClient, LabelStudioError
from annotation.labelstudio.config import result_for
from annotation.labelstudio.sync import ensure_project, open_project, pull, push, status
from preference.schema import Label, Strength
from preference.store import PreferenceStore
from rlhfkit.core.settings import label_studio_dir
from tests.labelstudio_support import free_port, make_pairs, requires_label_studio, start_server

pytestmark = [pytest.mark.integration, requires_label_studio()]


def shown_good(task: dict) -> Label:
    """The label a careful annotator clicks: the side (as shown) holding the GOOD answer."""
    return Label.A if task["data"]["answer_a"].startswith("GOOD") else Label.B


def stored_good(record) -> Label:
    return Label.A if record.response_a.startswith("GOOD") else Label.B


def test_round_trip_two_annotators(server, tmp_path):
    admin = server.client()
    project = ensure_project(admin, "round trip", overlap=2)
    pairs = make_pairs(8)
    first = push(admin, project["id"], pairs, batch_size=3)
    assert (first.created, first.already_there, first.batches) == (8, 0, 3)
    again = push(admin, project["id"], pairs + make_pairs(2))  # the same pairs again: nothing new
    assert (again.created, again.already_there) == (0, 8)
    tasks = list(admin.tasks(project["id"]))
    assert len(tasks) == 8 and len({t["data"]["pair_id"] for t in tasks}) == 8
    swapped = [t["data"]["shown_swapped"] for t in tasks]
    assert any(swapped) and not all(swapped)  # positions really are randomised

    alice_login, bob_login = invite(admin, "alice@example.com"), invite(admin, "bob@example.com")
    alice = LabelStudioClient(server.url, alice_login.token)
    bob = LabelStudioClient(server.url, bob_login.token)
    alice_ids = {}
    for task in tasks:  # alice is always right, and sure of it
        alice_ids[task["id"]] = alice.create_annotation(task["id"], result_for(shown_good(task), Strength.STRONG))["id"]
    disagree, tie, skipped = tasks[0], tasks[1], tasks[2]
    for task in tasks[3:]:
        bob.create_annotation(task["id"], result_for(shown_good(task), Strength.SLIGHT))
    bob.create_annotation(disagree["id"], result_for(shown_good(disagree).swapped()))
    bob.create_annotation(tie["id"], result_for(Label.TIE, Strength.CLEAR, "both say the same"))
    bob.create_annotation(skipped["id"], [], was_cancelled=True)

    store = PreferenceStore(tmp_path / "prefs")
    report = pull(admin, project["id"], store)
    assert (report.new, report.updated, report.skipped, report.rejected) == (15, 0, 1, [])
    records = list(store.records())
    by_who = {(r.annotator, int(r.item)): r for r in records}
    for task in tasks:  # de-randomised: alice's label names the GOOD answer in the pair's own order
        record = by_who[("alice@example.com", task["id"])]
        assert record.label == stored_good(record) and record.strength == Strength.STRONG
        assert record.metadata["shown_swapped"] == task["data"]["shown_swapped"]
    bob_disagree = by_who[("bob@example.com", disagree["id"])]
    assert bob_disagree.label != stored_good(bob_disagree)
    bob_tie = by_who[("bob@example.com", tie["id"])]
    assert (bob_tie.label, bob_tie.strength, bob_tie.metadata["reason"]) == (Label.TIE, None, "both say the same")
    assert ("bob@example.com", skipped["id"]) not in by_who
    assert isinstance(records[0].prompt, list | str) and {r.pair_id for r in records} == {p.pair_id for p in pairs}

    info = status(admin, project["id"])
    assert info["tasks"] == 8 and info["tasks_complete"] == 7 and info["skipped"] == 1
    assert info["per_annotator"] == {"alice@example.com": 8, "bob@example.com": 7}
    assert {d["task"] for d in info["disagreements"]} == {disagree["id"], tie["id"]}
    assert 0 < info["agreement"]["krippendorff_alpha"] < 1

    # Alice edits one annotation: the next pull updates her judgment and nothing else.
    task = tasks[4]
    alice.update_annotation(alice_ids[task["id"]], result_for(Label.BOTH_BAD))
    report = pull(admin, project["id"], store)
    assert (report.new, report.updated, report.unchanged) == (0, 1, 15)  # 14 labels + 1 skip, all seen
    edited = [r for r in store.records() if r.annotator == "alice@example.com" and int(r.item) == task["id"]]
    assert len(edited) == 1 and edited[0].label == Label.BOTH_BAD and len(store) == 15
    assert pull(admin, project["id"], store).new == 0


def test_malformed_results_are_quarantined_with_a_reason(server, tmp_path):
    admin = server.client()
    project = ensure_project(admin, "malformed")
    push(admin, project["id"], make_pairs(2))
    first, second = list(admin.tasks(project["id"]))
    admin.create_annotation(first["id"], [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                                           "value": {"choices": ["c"]}}])
    admin.create_annotation(second["id"], result_for(Label.A))
    store = PreferenceStore(tmp_path / "prefs")
    report = pull(admin, project["id"], store)
    assert report.new == 1 and len(report.rejected) == 1 and len(store) == 1
    (line,) = open(report.quarantine).read().splitlines()
    assert "exactly one of a, b, tie, both_bad" in json.loads(line)["reason"]


def test_a_project_with_another_config_is_refused(server):
    admin = server.client()
    other = admin.create_project(title="not ours", label_config=(
        '<View><Text name="text" value="$text"/><Choices name="c" toName="text">'
        '<Choice value="x"/></Choices></View>'))
    with pytest.raises(LabelStudioError, match="not an rlhfkit pairwise project"):
        open_project(admin, other["id"])
    with pytest.raises(LabelStudioError, match="not an rlhfkit pairwise project"):
        ensure_project(admin, "not ours")


def test_a_wrong_token_gets_a_clear_message_without_the_token(server):
    bad = "0123456789abcdef0123456789abcdef01234567"
    client = LabelStudioClient(server.url, bad)
    with pytest.raises(LabelStudioAuthError) as caught:
        client.whoami()
    assert "refused the API token" in str(caught.value) and bad not in str(caught.value)
    assert bad not in repr(client)


def test_server_stopped_mid_push_recovers_without_duplicates(tmp_path):
    server = start_server(tmp_path / "ls")
    try:
        admin = server.client()
        project = ensure_project(admin, "interrupted")
        pairs = make_pairs(60)
        restarted = threading.Event()

        def stop_after_first_batch(count: int) -> None:
            if not restarted.is_set():
                restarted.set()
                server.stop()  # SIGTERM: the next request finds no server
                threading.Timer(1.0, server.start).start()  # back a few seconds later, same data

        report = push(admin, project["id"], pairs, batch_size=10, on_batch=stop_after_first_batch)
        assert report.recoveries >= 1 and report.created == 60
        ids = [task["data"]["pair_id"] for task in admin.tasks(project["id"], fields="task_only")]
        assert len(ids) == 60 == len(set(ids))

        # Down for good: a clear error after the retries; running push again later finishes the job.
        server.stop()
        quick = LabelStudioClient(server.url, server.credentials.token, retries=2, backoff=0.1)
        with pytest.raises(LabelStudioError, match="did not answer .* Is the server running"):
            push(quick, project["id"], make_pairs(70))
        server.start()
        report = push(admin, project["id"], make_pairs(70))
        assert (report.created, report.already_there) == (10, 60)
    finally:
        server.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_label_studio_when_it_is_stopped(tmp_path, signum):
    """`rlhfkit annotate serve` as a user runs it; killing it (or Ctrl-C) must not leave Label Studio running."""
    port = free_port()
    env = {**os.environ, "RLHFKIT_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    (tmp_path / "home" / "labelstudio").mkdir(parents=True)
    for name in ["credentials.json", *(p.name for p in label_studio_dir().glob("template-*.sqlite3"))]:
        shutil.copyfile(label_studio_dir() / name, tmp_path / "home" / "labelstudio" / name)  # a fast start
    rlhfkit = Path(sys.executable).with_name("rlhfkit")
    serve = subprocess.Popen([str(rlhfkit), "annotate", "serve", "--port", str(port)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    server_file = tmp_path / "home" / "labelstudio" / "server.json"
    try:
        deadline = time.monotonic() + 120
        while not server_file.exists() and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(0.5)
        assert server_file.exists(), serve.stdout.read() if serve.poll() is not None else "no server.json"
        label_studio_pid = json.loads(server_file.read_text())["pid"]
        serve.send_signal(signum)
        assert serve.wait(60) == 0 or serve.returncode in (1, 130)
        time.sleep(1)
        with pytest.raises(ProcessLookupError):
            os.kill(label_studio_pid, 0)  # Label Studio is gone too
        assert not server_file.exists()
    finally:  # even when the test fails, leave no server behind
        if serve.poll() is None:
            serve.terminate()
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
        if server_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(json.loads(server_file.read_text())["pid"], signal.SIGTERM)


def test_preannotations_follow_the_shown_positions(server):
    from annotation.verifier import VerifierAnnotator
    from preference.pairs import Pair

    admin = server.client()
    project = ensure_project(admin, "pre-annotated")
    meta = {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    pairs = [Pair(f"Name fruits, no commas ({i}).", f"Apples and pears {i}.", f"Apples, pears {i}.", meta)
             for i in range(6)]
    push(admin, project["id"], pairs, preannotator=VerifierAnnotator())
    tasks = list(admin.tasks(project["id"]))
    assert len(tasks) == 6 and any(t["data"]["shown_swapped"] for t in tasks)
    for task in tasks:
        (prediction,) = task["predictions"]
        chosen = prediction["result"][0]["value"]["choices"][0]
        shown = task["data"]["answer_a"] if chosen == "a" else task["data"]["answer_b"]
        assert "," not in shown  # the comma-free answer, on whichever side the shuffle put it
