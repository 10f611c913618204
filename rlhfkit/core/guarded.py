"""Start a command that ends, with every process it starts, when rlhfkit ends however it ends (SIGKILL included).

The command runs under `process_guard.py` (beside this file) as the leader of a new session, with a pipe on the
guard's stdin that only this process holds: when rlhfkit exits the pipe closes and the guard ends the command's
whole process group. Used for the vLLM server and for training launched on several processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

GUARD = Path(__file__).with_name("process_guard.py")


def _session_leader(die_with_parent: bool) -> Any:
    """What the child runs before exec: lead a session (and process group) of its own; with `die_with_parent`, get
    SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG). That signal comes when the *thread* that started the
    child ends, so it is asked for only from the main thread."""
    def setup() -> None:
        os.setsid()
        if die_with_parent and sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    return setup


def start_guarded(command: Sequence[str], *, grace: float, env: Mapping[str, str] | None = None,
                  stdout: IO[Any] | int | None = None, stderr: IO[Any] | int | None = None,
                  cwd: str | Path | None = None) -> subprocess.Popen[bytes]:
    """Start `command` under the guard; `stop_guarded` (or rlhfkit's exit) ends it and its children."""
    main_thread = threading.current_thread() is threading.main_thread()
    return subprocess.Popen([sys.executable, str(GUARD), str(grace), "--", *command], env=env, stdout=stdout,
                            stderr=stderr, stdin=subprocess.PIPE, cwd=cwd, preexec_fn=_session_leader(main_thread))


def stop_guarded(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the guarded command's process group; SIGKILL what is left after `grace` seconds."""
    if process.stdin is not None:
        process.stdin.close()  # the guard's signal to end the group
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace + 10)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the command's own children, should any be left
    except ProcessLookupError:
        pass
