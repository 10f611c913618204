"""`rlhfkit run --annotator labelstudio`: pairs go to a real Label Studio server, the run waits for people, stops
when they are not done (keeping what they labeled) and continues on a rerun."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotation.labelstudio.config import result_for
from annotation.labelstudio.sync import open_project
from preference.schema import Label
from preference.store import PreferenceStore
from rlhfkit.cli.main import app
from tests.labelstudio_support import requires_label_studio, start_server
from tests.rlhfkit.test_pipeline import tiny_config, write

pytestmark = [pytest.mark.integration, requires_label_studio()]


def test_run_waits_for_people_stops_and_resumes(tmp_path, monkeypatch):
    server = start_server(tmp_path / "labelstudio")
    try:
        monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.credentials.token)
        config = tiny_config(tmp_path, prompts={"train": 4, "heldout": 3}, generate={"num_candidates": 2},
                             label={"annotator": "labelstudio",
                                    "labelstudio": {"project": "pipeline test", "timeout_s": 8, "poll_s": 0.5}})
        path = write(tmp_path / "run.yaml", config)
        work = Path(config["workdir"])
        client = server.client()

        def label(tasks: list[dict]) -> None:
            for task in tasks:
                client.create_annotation(task["id"], result_for(Label.A))

        # Nobody labels: the run waits until its timeout, then stops (exit 3) saying how far people got.
        result = CliRunner().invoke(app, ["run", "--config", str(path)], terminal_width=300)
        assert result.exit_code == 3, result.output
        pairs = len((work / "label" / "pairs.jsonl").read_text().splitlines())
        assert pairs >= 3
        assert f"0 of {pairs} pairs are labeled" in result.output and "Rerun `rlhfkit run`" in result.output
        assert list(json.loads((work / "manifest.json").read_text())["stages"]) == ["prompts", "generate"]
        project = open_project(client, "pipeline test")
        tasks = list(client.tasks(project["id"]))
        assert len(tasks) == pairs

        # Some labeled: they are pulled into the run's store, the rest still awaited; no task is pushed twice.
        label(tasks[:2])
        result = CliRunner().invoke(app, ["run", "--config", str(path)], terminal_width=300)
        assert result.exit_code == 3 and f"2 of {pairs} pairs are labeled" in result.output, result.output
        assert len(PreferenceStore(work / "label" / "store")) == 2
        assert len(list(client.tasks(project["id"]))) == pairs

        # The rest is answered while the run waits, one pair skipped (an answer too): it goes on through every stage.
        def finish() -> None:
            label(tasks[2:-1])
            client.create_annotation(tasks[-1]["id"], [], was_cancelled=True)

        helper = threading.Timer(1.5, finish)
        helper.start()
        started = time.monotonic()
        result = CliRunner().invoke(app, ["run", "--config", str(path)], terminal_width=300)
        helper.join()
        assert result.exit_code == 0, result.output
        manifest = json.loads((work / "manifest.json").read_text())
        labels = manifest["stages"]["label"]["result"]
        assert labels["judgments"] == pairs - 1 and labels["label_a"] + labels["label_b"] == pairs - 1
        assert (work / "report.html").exists() and time.monotonic() - started > 1.5
    finally:
        server.stop()
