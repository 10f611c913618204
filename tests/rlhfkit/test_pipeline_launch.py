"""`rlhfkit run` with its training stages on two processes (`launch.num_processes: 2`): gloo processes started by
the real `accelerate launch`, on tiny models. A process that dies fails the stage without hanging the others, a
killed run leaves no process behind, and the rerun resumes from the last complete checkpoint to the same model."""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file

from rlhfkit.core.errors import ConfigError, SetupError, TrainingFailed
from rlhfkit.pipeline.config import LaunchSection, PipelineConfig, load_config
from rlhfkit.pipeline.launch import LOG_FILE, check_launch, run_training
from rlhfkit.pipeline.stages import STAGES, Context
from tests.rlhfkit.test_pipeline import manifest, rlhfkit, tiny_config, write

REPO = Path(__file__).resolve().parents[2]


def launched_processes(work: Path) -> list[tuple[int, str]]:
    """(pid, LOCAL_RANK) of the processes of the run in `work` that launch or train: the guard and accelerate's
    launcher have no rank (""), each training process its own."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if b"rlhfkit.pipeline.launched" not in command or str(work).encode() not in command:
                continue
            variables = (entry / "environ").read_bytes().split(b"\0")
            environ = dict(item.split(b"=", 1) for item in variables if b"=" in item)
        except OSError:
            continue
        found.append((int(entry.name), environ.get(b"LOCAL_RANK", b"").decode()))
    return found


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def adapter(work: Path) -> dict[str, torch.Tensor]:
    return load_file(work / "update" / "model" / "adapter_model.safetensors")


def test_training_stages_on_two_processes_survive_a_dead_process_and_a_killed_run(tmp_path):
    config = tiny_config(tmp_path, launch={"num_processes": 2},
                         update={"dpo": {"max_steps": 20, "per_device_train_batch_size": 2, "max_length": 128}})
    path = write(tmp_path / "run.yaml", config)
    work = Path(config["workdir"])

    # Uninterrupted: every stage, the two training stages under accelerate launch.
    first = rlhfkit("run", "--config", str(path))
    output = first.communicate(timeout=900)[0]
    assert first.returncode == 0, output
    assert list(manifest(work)["stages"]) == list(STAGES)
    assert output.count("training on 2 processes (CPU, gloo) under accelerate launch") == 2
    uninterrupted = adapter(work)
    assert (work / "reward" / LOG_FILE).is_file() and (work / "update" / LOG_FILE).is_file()
    assert not launched_processes(work)

    # One process dies mid-update: the other is stopped, and the stage fails at once with a clear error.
    checkpoint = work / "update" / "checkpoints" / "checkpoint-10" / "trainer_state.json"
    started = time.time_ns()
    second = rlhfkit("run", "--config", str(path), "--from", "update")  # (the first run's update folder goes)
    wait_for(lambda: checkpoint.is_file() and checkpoint.stat().st_mtime_ns > started, 600, "the first checkpoint")
    saved_at = checkpoint.stat().st_mtime_ns
    rank1 = [pid for pid, rank in launched_processes(work) if rank == "1"]
    assert rank1, "no second process to kill (did training finish first?)"
    os.kill(rank1[0], signal.SIGKILL)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 1, output
    assert "the training processes failed" in output and "rerun the same command to resume" in output
    assert "update" not in manifest(work)["stages"]
    wait_for(lambda: not launched_processes(work), 60, "the other process to end")

    # The rerun is killed outright (SIGKILL) while it trains: the guard ends the launched group with it.
    third = rlhfkit("run", "--config", str(path))
    wait_for(lambda: sorted(rank for _, rank in launched_processes(work) if rank) == ["0", "1"], 300,
             "the relaunched processes")
    third.send_signal(signal.SIGKILL)
    third.wait(60)
    wait_for(lambda: not launched_processes(work), 60, "no launched process to outlive the killed run")

    # The last rerun resumes from checkpoint-10 (not retrained: its files are as they were) to the same model.
    last = rlhfkit("run", "--config", str(path))
    output = last.communicate(timeout=900)[0]
    assert last.returncode == 0, output
    assert list(manifest(work)["stages"]) == list(STAGES)
    assert checkpoint.stat().st_mtime_ns == saved_at
    resumed = adapter(work)
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-4, atol=1e-6, msg=name)


def test_a_failing_process_group_is_one_clear_error_naming_its_log(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump({"launch": {"num_processes": 2}, "no_such_section": 1}))
    settings = load_config(None, {"launch.num_processes": 2, "workdir": str(work)})
    ctx = Context(settings=settings, work=work, base=tmp_path, console=Console(stderr=True))
    said = r"(?s)stage 'reward'.*reward/launch\.log.*process [01] failed: ValidationError.*no_such_section"
    with pytest.raises(TrainingFailed, match=said):
        run_training(ctx, "reward", train=lambda: pytest.fail("a launched stage trains in its processes"))
    assert not launched_processes(work)


def test_launches_this_machine_cannot_run_are_refused_before_any_work(tmp_path):
    deepspeed = tmp_path / "ds.yaml"
    deepspeed.write_text(yaml.safe_dump({"distributed_type": "DEEPSPEED", "num_processes": 2}))
    ddp = tmp_path / "ddp.yaml"
    ddp.write_text((REPO / "configs" / "accelerate" / "ddp.yaml").read_text())
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(SetupError, match="asks for DeepSpeed, which is not installed: pip install deepspeed"):
            check_launch(LaunchSection(accelerate_config=str(deepspeed)), gpus=2)
    else:
        with pytest.raises(ConfigError, match="DeepSpeed, which needs CUDA GPUs"):
            check_launch(LaunchSection(accelerate_config=str(deepspeed)), gpus=0)
    with pytest.raises(ConfigError, match="8 processes on 1 machine.*need 8 GPUs on each, and this machine has 1"):
        check_launch(LaunchSection(accelerate_config=str(ddp)), gpus=1)  # the file's num_processes
    with pytest.raises(ConfigError, match="4 processes on 1 machine"):
        check_launch(LaunchSection(num_processes=4), gpus=2)
    check_launch(LaunchSection(num_processes=2), gpus=0)  # gloo on a CPU: fine
    check_launch(LaunchSection(num_processes=8, accelerate_config=str(ddp)), gpus=8)
    with pytest.raises(ConfigError, match="launch.accelerate_config: .*missing.yaml does not exist"):
        load_config(None, {"launch.accelerate_config": str(tmp_path / "missing.yaml")})
    assert isinstance(PipelineConfig().launch, LaunchSection) and PipelineConfig().launch.num_processes == 1
