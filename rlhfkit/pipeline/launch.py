"""The training stages on several processes: `accelerate launch` of `rlhfkit.pipeline.launched`, checked first.

With `launch.num_processes` above 1 (or an `accelerate_config`), the reward and update stages start their training
under accelerate's launcher (DDP, FSDP or DeepSpeed as its config says; gloo processes on a machine without GPUs)
and wait for it; everything else stays in the main process. The launched group runs under rlhfkit's process guard,
so it ends with rlhfkit however rlhfkit ends, and a process that fails ends the group (torchrun's agent stops the
others): the stage then fails with what they printed last, and a rerun resumes from the last complete checkpoint.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rlhfkit.core.errors import ConfigError, SetupError, TrainingFailed
from rlhfkit.core.guarded import start_guarded, stop_guarded

log = logging.getLogger(__name__)

FAILURE = "rlhfkit training process"
"""How a launched process that fails starts the one line that says why (`rlhfkit.pipeline.launched`)."""
LOG_FILE = "launch.log"
"""In the stage's folder: everything the launched processes printed, every attempt appended."""
_TAIL_BYTES = 6000


def launches(launch: Any) -> bool:
    """Whether the training stages run under `accelerate launch` rather than in this process."""
    return launch.num_processes > 1 or launch.accelerate_config is not None


def _accelerate_settings(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        settings = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"launch.accelerate_config: cannot read {path}: {exc}") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"launch.accelerate_config: {path} is not an accelerate config (a YAML mapping)")
    return settings


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_launch(launch: Any, *, gpus: int | None = None) -> None:
    """Refuse, before any work, a launch this machine cannot run: DeepSpeed not installed or without a GPU, more
    processes per machine than GPUs. `gpus`: the GPU count (None: this machine's)."""
    if not launches(launch):
        return
    settings = _accelerate_settings(launch.accelerate_config)
    kind = str(settings.get("distributed_type", "MULTI_GPU")).upper()
    gpus = gpu_count() if gpus is None else gpus
    where = f"launch.accelerate_config ({launch.accelerate_config})"
    if kind == "DEEPSPEED":
        if importlib.util.find_spec("deepspeed") is None:
            raise SetupError(f"{where} asks for DeepSpeed, which is not installed: pip install deepspeed (on a "
                             "machine with CUDA GPUs), or use configs/accelerate/ddp.yaml or fsdp.yaml")
        if not gpus:
            raise ConfigError(f"{where} asks for DeepSpeed, which needs CUDA GPUs; this machine has none: leave "
                              "accelerate_config out (num_processes alone runs gloo processes on the CPU)")
    processes = launch.num_processes if launch.num_processes > 1 else int(settings.get("num_processes", 1))
    machines = max(1, int(settings.get("num_machines", 1)))
    per_machine = -(-processes // machines)
    if gpus and per_machine > gpus:
        raise ConfigError(f"launch.num_processes: {processes} processes on {machines} machine(s) need {per_machine} "
                          f"GPUs on each, and this machine has {gpus}: one process per GPU")
    if not gpus and per_machine > (os.cpu_count() or 1):
        log.warning("launch.num_processes: %d processes on %d CPU cores: they will take turns", per_machine,
                    os.cpu_count() or 1)


def launch_command(launch: Any, stage: str, work: Path, base: Path, *, gpus: int) -> tuple[list[str], dict[str, str]]:
    """The `accelerate launch` command line and environment of one training stage."""
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    env = dict(os.environ)
    if launch.accelerate_config is not None:
        command += ["--config_file", launch.accelerate_config]
    else:  # the settings accelerate would otherwise guess (and warn about)
        command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if launch.num_processes > 1:
        command += ["--num_processes", str(launch.num_processes)]
        if launch.accelerate_config is None:
            command += ["--multi_gpu"]  # torchrun's launcher; without GPUs the processes use gloo (below)
    if not gpus:
        env["ACCELERATE_USE_CPU"] = "true"
    env.setdefault("OMP_NUM_THREADS", "1")
    command += ["--main_process_port", str(launch.main_process_port),
                "-m", "rlhfkit.pipeline.launched", stage, "--work", str(work), "--base", str(base)]
    return command, env


def _show(chunk: bytes) -> None:
    """Pass the processes' output on as it comes (progress bars included)."""
    stream = getattr(sys.stderr, "buffer", None)
    if stream is not None:
        stream.write(chunk)
    else:  # a captured stderr (tests, notebooks) takes text
        sys.stderr.write(chunk.decode(errors="replace"))
    sys.stderr.flush()


def run_training(ctx: Any, stage: str, train: Callable[[], Any]) -> None:
    """Run `train` here, or, when the run's `launch` asks for it, the stage's training on several processes
    (`rlhfkit.pipeline.launched` does the same `train` in each)."""
    launch = ctx.settings.launch  # where training runs changes no result a rerun must redo: not a recorded read
    if not launches(launch):
        train()
        return
    gpus = gpu_count()
    command, env = launch_command(launch, stage, ctx.work.resolve(), ctx.base.resolve(), gpus=gpus)
    log_path = ctx.folder(stage) / LOG_FILE
    processes = launch.num_processes if launch.num_processes > 1 else "the accelerate config's"
    ctx.console.print(f"training on {processes} processes ({'GPUs' if gpus else 'CPU, gloo'}) under accelerate "
                      f"launch; output also in {log_path}")
    tail = bytearray()
    with open(log_path, "ab") as log_file:
        process = start_guarded(command, grace=10.0, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert process.stdout is not None
            while chunk := os.read(process.stdout.fileno(), 65536):
                _show(chunk)
                log_file.write(chunk)
                tail = (tail + chunk)[-_TAIL_BYTES:]
            code = process.wait()
        finally:
            stop_guarded(process, 10.0)  # an interrupted wait (Ctrl-C) ends the whole group too
    if code != 0:
        lines = tail.decode(errors="replace").replace("\r", "\n").splitlines()
        # Each failed process says why in one line; without one (killed, out of memory), the last lines say most.
        why = list(dict.fromkeys(line for line in lines if line.startswith(FAILURE))) or lines[-12:]
        raise TrainingFailed(f"stage {stage!r}: the training processes failed (exit {code}); rerun the same command "
                             f"to resume from the last complete checkpoint (their output: {log_path}):\n"
                             + "\n".join(why))
