"""`rlhfkit instructions generate | score | optimize` as a user runs them (tiny policy, no LM / tiny LM)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rlhfkit.cli.main import app
from tests.policy_support import tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    return tiny_policy(tmp_path_factory.mktemp("policy") / "tiny")


def test_generate_without_an_lm_uses_the_fallback():
    result = runner.invoke(app, ["instructions", "generate", "summarise the text", "--format", "list", "--lm", "none"])
    assert result.exit_code == 0, result.output
    assert "fallback" in result.output and "Summarise the text." in result.output


def test_score_and_optimize(policy_dir, tmp_path):
    result = runner.invoke(app, ["instructions", "score", "Be brief.", "--prompts", "builtin:6", "--model",
                                 policy_dir, "--max-new-tokens", "6", "-o", str(tmp_path / "score.json")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "score.json").read_text())
    assert len(saved["per_prompt"]) == 6 and saved["ci_low"] <= saved["score"] <= saved["ci_high"]
    args = ["instructions", "optimize", "-o", str(tmp_path / "search"), "--prompts", "builtin:10", "--model",
            policy_dir, "--lm", "none", "--population", "3", "--generations", "1", "--max-new-tokens", "6",
            "--budget", "200"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "search" / "result.json").read_text())
    assert report["policy_calls"] <= 200 and len(report["history"]) == 2
    assert (tmp_path / "search" / "search.png").stat().st_size > 0
    again = runner.invoke(app, args)  # resumes from search.json: the same answer, no new policy calls
    assert again.exit_code == 0 and json.loads((tmp_path / "search" / "result.json").read_text()) == report
    small = runner.invoke(app, args[:-1] + ["2"] + ["-o", str(tmp_path / "tiny-budget")])
    assert small.exit_code == 1 and "budget" in small.output


def test_tune_compiles_a_program_saves_it_and_resumes(policy_dir, tmp_path):
    import dspy

    out = tmp_path / "tune"
    args = ["instructions", "tune", "-o", str(out), "--prompts", "builtin:8", "--model", policy_dir, "--lm", "none",
            "--backend", "transformers", "--rounds", "1", "--candidates", "2", "--max-new-tokens", "6",
            "--budget", "40", "--start", "Answer the request. Be brief."]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["calls"] <= 40 and report["history"][0]["predictor"] == "self"
    assert report["train_score"] >= report["start_train_score"]
    loaded = dspy.Predict("prompt -> response")
    loaded.load(out / "program.json")
    assert loaded.signature.instructions == report["instructions"]["self"]
    assert json.loads((out / "search.json").read_text())["step"] == 0
    again = runner.invoke(app, args)  # resumes from search.json: the same program and report
    assert again.exit_code == 0 and json.loads((out / "report.json").read_text()) == report
    small = runner.invoke(app, [*args[:-4], "--budget", "3", "-o", str(tmp_path / "small")])
    assert small.exit_code == 1 and "does not cover" in small.output
