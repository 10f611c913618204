"""Run a command so that it and every process it starts end when the process that asked for it ends, however it ends.

    python process_guard.py GRACE_SECONDS -- COMMAND...

Run as a script (standard library only, so it starts in milliseconds). The caller starts it as the leader of a new
session with a pipe on its stdin. The guard starts COMMAND in its own process group and waits. It cleans up -- SIGTERM
to the whole group, SIGKILL after GRACE_SECONDS to whatever is left -- when:
- its stdin reaches end of file: the caller exited, even by SIGKILL, or closed the pipe to stop it;
- it gets SIGTERM, SIGINT or SIGHUP (the caller's `killpg`, or Linux `PR_SET_PDEATHSIG`);
- COMMAND exits by itself (its own children must not outlive it).

A server that forks workers (vLLM's engine core, its API server) does not always pass a SIGTERM on to them while it
is still starting; the guard does not rely on it, since every process of the group gets the signal itself. It exits
with COMMAND's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def group_members(group: int) -> list[int]:
    """Pids in process group `group`, read from /proc (Linux); [] where /proc is missing."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp. Zombies have released everything but their pid.
        if len(fields) > 2 and int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def end_group(group: int, grace: float) -> None:
    """SIGTERM every process in `group` but this one; SIGKILL those left after `grace` seconds."""
    me = os.getpid()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        others = [pid for pid in group_members(group) if pid != me]
        for pid in others:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5.0)
        while others and time.monotonic() < deadline:
            time.sleep(0.2)
            others = [pid for pid in group_members(group) if pid != me]
        if not others:
            return


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: process_guard.py GRACE_SECONDS -- COMMAND...", file=sys.stderr)
        return 2
    grace = float(argv[0])
    group = os.getpgrp()
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    def watch_caller() -> None:
        try:  # the raw descriptor: a daemon thread inside a buffered read aborts the interpreter at exit
            while os.read(0, 4096):
                pass
        except (OSError, ValueError):
            pass
        done.set()

    # The command's group is the guard's; default signal handling for it, whatever the guard changed.
    child = subprocess.Popen(argv[2:], preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in
                                                            (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)],
                             stdin=subprocess.DEVNULL)
    threading.Thread(target=watch_caller, daemon=True).start()
    while child.poll() is None and not done.wait(0.5):
        pass
    end_group(group, grace)
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
