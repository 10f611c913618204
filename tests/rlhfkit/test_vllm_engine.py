"""The vLLM engine for real (`vllm serve` from its own virtualenv, the CPU build here): start, generate, resume after
the engine is killed, stop, no orphan process, DSPy through LiteLLM's OpenAI route, and greedy parity with
transformers on the bundled SmolLM2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policy.generate import Answerer, GenerationConfig, generate_candidates, read_candidates
from policy.prompts import PromptItem, builtin_prompts
from rlhfkit.models import vllm_server
from rlhfkit.models.vllm_server import EngineError, VLLMServer, shared_server
from tests.policy_support import tiny_policy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine_policy(tmp_path_factory) -> str:
    # vLLM's CPU attention kernels take head sizes such as 64 (the test suite's usual tiny policy has 16).
    return tiny_policy(tmp_path_factory.mktemp("engine") / "tiny", hidden_size=128, num_heads=2, num_layers=2)


@pytest.fixture(scope="module", autouse=True)
def stop_servers():
    yield
    vllm_server.stop_all()


def engine_processes(folder: str) -> list[int]:
    """Pids of the engine processes serving `folder` (vLLM renames its workers; their environment names it)."""
    wanted = f"{vllm_server.MODEL_ENV}={Path(folder).resolve()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def engines_serving(test: object) -> list[int]:
    """Pids of engine processes whose model folder satisfies `test` (a callable on the folder's path text)."""
    prefix = f"{vllm_server.MODEL_ENV}=".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                values = [v[len(prefix):].decode() for v in (entry / "environ").read_bytes().split(b"\0")
                          if v.startswith(prefix)]
            except OSError:
                continue
            if any(test(value) for value in values):
                pids.append(int(entry.name))
    return pids


def wait_until(condition, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def test_generates_same_rows_reproducibly_and_resumes_after_the_engine_is_killed(vllm_venv, engine_policy, tmp_path):
    prompts = builtin_prompts(12)
    config = GenerationConfig(model=engine_policy, num_candidates=2, max_new_tokens=12, temperature=1.0,
                              batch_size=4, backend="vllm-server")
    whole = generate_candidates(prompts, config, tmp_path / "whole.jsonl", progress=False)
    rows = read_candidates(whole.path)
    assert [row["key"] for row in rows] != [] and sorted(r["key"] for r in rows) == sorted(p.key for p in prompts)
    assert all(len(row["candidates"]) == 2 and set(row["finish_reasons"]) <= {"stop", "length"} for row in rows)
    assert whole.new_tokens > 0

    again = read_candidates(generate_candidates(prompts, config, tmp_path / "again.jsonl", progress=False).path)
    assert [r["candidates"] for r in again] == [r["candidates"] for r in rows]  # a seed per prompt

    server = shared_server(Path(engine_policy), max_model_len=1024)

    def kill_engine(index: int) -> None:
        if index == 0:
            os.killpg(server.process.pid, signal.SIGKILL)

    out = tmp_path / "killed.jsonl"
    with pytest.raises(EngineError, match="did not answer|not running"):
        generate_candidates(prompts, config, out, progress=False, on_chunk=kill_engine)
    partial = out.with_name(out.name + ".partial")
    assert len(partial.read_text().splitlines()) == 4  # the first chunk was saved before the engine died
    resumed = read_candidates(generate_candidates(prompts, config, out, progress=False).path)  # a new engine
    assert [r["key"] for r in resumed] == [r["key"] for r in rows]  # nothing lost or doubled
    assert [r["candidates"] for r in resumed] == [r["candidates"] for r in rows]


def test_a_file_begun_by_another_engine_is_not_continued(vllm_venv, engine_policy, tmp_path):
    prompts = builtin_prompts(6)
    out = tmp_path / "c.jsonl"
    config = GenerationConfig(model=engine_policy, num_candidates=1, temperature=0.0, max_new_tokens=4, batch_size=2,
                              backend="transformers")

    def stop(index: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_candidates(prompts, config, out, progress=False, on_chunk=stop)
    served = GenerationConfig(**{**config.__dict__, "backend": "auto"})  # auto now picks the engine
    with pytest.raises(ValueError, match="engine transformers, now vllm-server"):
        generate_candidates(prompts, served, out, progress=False)
    assert len(out.with_name(out.name + ".partial").read_text().splitlines()) == 2  # kept for a matching rerun


def test_answerer_and_a_retrained_policy_get_a_fresh_engine(vllm_venv, engine_policy, tmp_path):
    import shutil

    folder = tmp_path / "policy"
    shutil.copytree(engine_policy, folder)
    answerer = Answerer(str(folder), max_new_tokens=6)
    assert answerer.backend == "vllm-server"
    # Plain prompts: the two random tiny models answer them differently (both stop at once on some prompts).
    prompts = [PromptItem("Hello"), PromptItem("Write a poem"), PromptItem("What is 2+2?")]
    first = answerer.answer("Be brief.", prompts)
    assert len(first) == 3 and answerer.calls == 3
    old = answerer.sampler.server
    tiny_policy(folder, seed=7, hidden_size=128, num_heads=2, num_layers=2)  # retrained in place
    fresh = Answerer(str(folder), max_new_tokens=6)
    assert fresh.sampler.server is not old and not old.running()  # the stale engine was stopped
    assert fresh.answer("Be brief.", prompts) != first


def test_dspy_lm_is_served_through_litellm(vllm_venv, engine_policy):

    from rlhfkit.lm.local_lm import is_served, lm_and_adapter

    lm, _ = lm_and_adapter(f"local:{engine_policy}", max_new_tokens=8)
    assert is_served(lm) and lm.model.startswith("openai/")
    first = lm("Say hi.")
    assert isinstance(first, list) and len(first) == 1 and isinstance(first[0], str)
    assert lm("Say hi.") == first  # greedy, like the in-process engine (or DSPy's cache)
    assert str(lm.history[0]["response"].id).startswith("chatcmpl-")  # answered by the server


def test_port_taken_and_missing_engine_give_clear_errors(vllm_venv, engine_policy, tmp_path, monkeypatch, caplog):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(EngineError, match=f"port {port} on 127.0.0.1 is in use"):
            VLLMServer(engine_policy, port=port).start()
    monkeypatch.setenv("RLHFKIT_VLLM_VENV", str(tmp_path / "nowhere"))
    with pytest.raises(EngineError, match="not installed.*make setup"):
        VLLMServer(engine_policy).start()
    # A broken engine: `auto` says so and generates with transformers; asked for by name, it fails.
    broken = tmp_path / "broken"
    (broken / "bin").mkdir(parents=True)
    (broken / "lib" / "python3.11" / "site-packages" / "vllm" / "entrypoints").mkdir(parents=True)
    (broken / "bin" / "python").write_text("#!/bin/sh\necho 'ImportError: no module named vllm._C'\nexit 1\n")
    (broken / "bin" / "python").chmod(0o755)
    monkeypatch.setenv("RLHFKIT_VLLM_VENV", str(broken))
    prompts = builtin_prompts(2)
    config = GenerationConfig(model=engine_policy, num_candidates=1, temperature=0.0, max_new_tokens=4,
                              backend="vllm-server")
    with pytest.raises(EngineError, match="exited with code 1.*virtualenv is broken"):
        generate_candidates(prompts, config, tmp_path / "named.jsonl", progress=False)
    with caplog.at_level("WARNING"):
        auto = GenerationConfig(**{**config.__dict__, "backend": "auto"})
        result = generate_candidates(prompts, auto, tmp_path / "auto.jsonl", progress=False)
    assert result.prompts == 2 and "generating with transformers instead" in caplog.text


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])  # Ctrl-C takes the SIGTERM path
def test_no_engine_outlives_rlhfkit(vllm_venv, engine_policy, tmp_path, how):
    folder = tmp_path / "policy"
    import shutil

    shutil.copytree(engine_policy, folder)  # a folder of its own: its processes are told apart by its path
    out = tmp_path / "c.jsonl"
    command = [sys.executable, "-m", "rlhfkit", "policy", "generate", "--out", str(out), "--model", str(folder),
               "--backend", "vllm-server", "-k", "1", "--temperature", "0", "--max-new-tokens", "4", "--limit", "2"]
    env = {**os.environ, "RLHFKIT_VLLM_VENV": str(vllm_venv)}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(engine_processes(str(folder))) >= 3, timeout=240), "the engine never started"
        process.send_signal(how)
        process.wait(60)
        assert wait_until(lambda: not engine_processes(str(folder)), timeout=60), \
            f"engine processes left after {how.name}: {engine_processes(str(folder))}"
    finally:
        process.kill()
        for pid in engine_processes(str(folder)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.integration
def test_greedy_answers_match_transformers_on_smollm2(vllm_venv, tmp_path):
    """64 prompts, greedy, fp32 on both sides: the share of identical answers and the pass-rate difference."""
    from policy.evaluate import PolicyEvalConfig, answer, pass_rates, verify_answers

    prompts = builtin_prompts(64, seed=3)
    results = {}
    for backend in ("transformers", "vllm-server"):
        config = PolicyEvalConfig(max_new_tokens=48, backend=backend, n_bootstrap=200)
        answers = answer("smollm2-135m-instruct", prompts, tmp_path / f"{backend}.jsonl", config)
        results[backend] = (answers, pass_rates(verify_answers(prompts, answers), config))
    ours, theirs = results["vllm-server"][0], results["transformers"][0]
    identical = sum(ours[key] == theirs[key] for key in theirs) / len(theirs)
    difference = (results["vllm-server"][1]["instruction_loose"]["value"]
                  - results["transformers"][1]["instruction_loose"]["value"])
    (tmp_path / "parity.json").write_text(json.dumps({"identical": identical, "pass_rate_difference": difference}))
    print(f"identical greedy answers: {identical:.3f}; instruction-loose pass rate difference {difference:+.3f}")
    assert identical >= 0.75  # fp32 on both sides: only accumulation order differs
    assert abs(difference) <= 0.05

    # A DSPy module over the same served model (the running engine is reused) parses SmolLM2's answers.
    import dspy

    from rlhfkit.lm.local_lm import is_served, lm_and_adapter

    lm, adapter = lm_and_adapter("smollm2-135m-instruct", max_new_tokens=48)
    assert is_served(lm)
    with dspy.context(lm=lm, adapter=adapter):
        prediction = dspy.Predict("prompt -> response")(prompt=prompts[0].prompt)
    assert prediction.response.strip()


def test_rlhfkit_run_generates_with_the_engine_and_leaves_none_running(vllm_venv, engine_policy, tmp_path):
    import shutil

    import yaml

    from tests.policy_support import easy_preferences
    from tests.rlhfkit.test_pipeline import tiny_config

    # Labels from a file: a random tiny policy's answers rarely give the verifier a preference to learn from.
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"prompt": r.prompt, "response_a": r.response_a, "response_b": r.response_b,
                                          "label": r.label.value, "annotator": r.annotator}) + "\n"
                              for r in easy_preferences(24)))
    config = tiny_config(tmp_path, generate={"backend": "vllm-server", "batch_size": None},
                         evaluate={"batch_size": None}, label={"annotator": "file", "file": str(labels)})
    shutil.copytree(engine_policy, tmp_path / "engine-policy")
    config["policy"]["model"] = str(tmp_path / "engine-policy")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "RLHFKIT_VLLM_VENV": str(vllm_venv), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "rlhfkit", "run", "--config", str(tmp_path / "run.yaml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads((Path(config["workdir"]) / "metrics.json").read_text())
    assert metrics["generate"]["engine"] == "vllm-server"
    assert metrics["evaluate"]["prompts"] == 6 and metrics["instructions"]["policy_calls"] > 0
    # The updated policy is a LoRA adapter folder: it was served merged; nothing of this run is left running.
    assert not engines_serving(lambda folder: folder.startswith(str(tmp_path)) or "/merged/model-" in folder)


def test_the_command_line_says_in_one_line_that_the_engine_is_missing(engine_policy, tmp_path):
    from typer.testing import CliRunner

    from rlhfkit.cli.main import app

    # The test session hides the engine (conftest): asking for it by name is the user's error, not a crash.
    result = CliRunner().invoke(app, ["policy", "generate", "--out", str(tmp_path / "c.jsonl"), "--model",
                                      engine_policy, "--backend", "vllm-server", "-k", "1", "--temperature", "0",
                                      "--limit", "1"])
    assert result.exit_code == 1
    assert "the vLLM engine is not installed" in result.output and "Traceback" not in result.output


def test_a_server_someone_else_runs_by_url_resumes_after_it_restarts(vllm_venv, engine_policy, tmp_path):
    """generate.server_url: rlhfkit starts no engine; a server that goes away fails the run, the rerun resumes."""
    from rlhfkit.core.ports import free_port

    prompts = builtin_prompts(8)
    sampling = dict(model=engine_policy, num_candidates=2, max_new_tokens=10, temperature=1.0, batch_size=4)
    port = free_port("127.0.0.1")
    with pytest.raises(EngineError, match=r"does not answer .*generate\.server_url"):
        generate_candidates(prompts, GenerationConfig(**sampling, server_url=f"http://127.0.0.1:{port}"),
                            tmp_path / "none.jsonl", progress=False)

    config = GenerationConfig(**sampling, server_url=f"http://127.0.0.1:{port}/v1")
    theirs = VLLMServer(Path(engine_policy), served_name="their-model", port=port, max_model_len=1024).start()
    started_by_rlhfkit = dict(vllm_server._SHARED)

    def server_goes_away(index: int) -> None:
        if index == 0:
            theirs.stop()

    out = tmp_path / "remote.jsonl"
    with pytest.raises(EngineError, match="did not answer"):
        generate_candidates(prompts, config, out, progress=False, on_chunk=server_goes_away)
    assert len(out.with_name(out.name + ".partial").read_text().splitlines()) == 4  # the first chunk is kept
    with VLLMServer(Path(engine_policy), served_name="their-model", port=port, max_model_len=1024):
        resumed = read_candidates(generate_candidates(prompts, config, out, progress=False).path)
        whole = read_candidates(generate_candidates(prompts, config, tmp_path / "whole.jsonl", progress=False).path)
    assert [r["key"] for r in resumed] == [r["key"] for r in whole]  # nothing lost or doubled
    assert [r["candidates"] for r in resumed] == [r["candidates"] for r in whole]
    assert vllm_server._SHARED == started_by_rlhfkit  # rlhfkit started no engine of its own for them
    local = GenerationConfig(**sampling, backend="vllm-server")  # the same engine started by rlhfkit: same answers
    mine = read_candidates(generate_candidates(prompts, local, tmp_path / "local.jsonl", progress=False).path)
    assert [r["candidates"] for r in mine] == [r["candidates"] for r in whole]
