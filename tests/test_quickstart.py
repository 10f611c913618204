"""`rlhfkit run` (today: the data path on a self-made sample plus the bundled models) runs and resumes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from preference.store import PreferenceStore
from rlhfkit.cli.main import app


@pytest.mark.integration
def test_run_then_resume_repeats_no_finished_stage(tmp_path):
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["run", "--workdir", str(work), "--prompts", "30"], terminal_width=200)
    assert result.exit_code == 0, result.output
    manifest = json.loads((work / "manifest.json").read_text())
    assert list(manifest["stages"]) == ["sample", "import", "stats", "split", "export", "models"]
    assert len(PreferenceStore(work / "store")) == 90  # 30 prompts x 3 simulated annotators
    stats = json.loads((work / "stats.json").read_text())
    assert stats["n_units"] == 30 and stats["krippendorff_alpha"] > 0.3  # the simulated annotators mostly agree
    pairs = [json.loads(line) for line in (work / "export" / "reward_train.jsonl").read_text().splitlines()]
    assert pairs and all({"prompt", "chosen", "rejected"} <= set(row) for row in pairs)
    assert set(json.loads((work / "metrics.json").read_text())["timings_s"]) == set(manifest["stages"])

    # Interrupted after "split": the export stage is not in the manifest and its output is gone.
    shard = PreferenceStore(work / "store").shard_paths()[0]
    store_mtime = shard.stat().st_mtime_ns
    del manifest["stages"]["export"], manifest["stages"]["models"]
    (work / "manifest.json").write_text(json.dumps(manifest))
    for path in (work / "export").iterdir():
        path.unlink()
    result = CliRunner().invoke(app, ["run", "--workdir", str(work), "--prompts", "30"], terminal_width=200)
    assert result.exit_code == 0, result.output
    resumed = json.loads((work / "manifest.json").read_text())
    assert resumed["stages"]["import"] == manifest["stages"]["import"]  # not run again
    assert shard.stat().st_mtime_ns == store_mtime
    assert (work / "export" / "reward_train.jsonl").exists()
