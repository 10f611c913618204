"""The process guard that every engine server runs under: no process of the group outlives its caller."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhfkit.core.guarded import GUARD
from rlhfkit.core.process_guard import group_members

# A caller that starts the guard the way VLLMServer does (new session, pipe on stdin) over a command that forks a
# child which ignores SIGTERM (as a busy engine worker may), prints the guard's pid and waits to be killed.
CALLER = f"""
import subprocess, sys, os, time
command = ["sh", "-c", "trap '' TERM; sleep 300 & sleep 300"]
guard = subprocess.Popen([sys.executable, {str(GUARD)!r}, "1", "--", *command], stdin=subprocess.PIPE,
                         start_new_session=True)
print(guard.pid, flush=True)
time.sleep(300)
"""


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_group_ends_when_the_caller_dies(how):
    caller = subprocess.Popen([sys.executable, "-c", CALLER], stdout=subprocess.PIPE, text=True)
    guard = int(caller.stdout.readline())
    assert wait_for(lambda: len(group_members(guard)) >= 4, 10), "guard, sh and two sleeps should be running"
    caller.send_signal(how)
    caller.wait(10)
    # SIGTERM first, then SIGKILL after the 1 s grace for the child that ignores SIGTERM.
    assert wait_for(lambda: not group_members(guard), 15), f"left running: {group_members(guard)}"


def test_stopping_the_group_reports_the_command_status_and_leaves_nothing(tmp_path: Path):
    guard = subprocess.Popen([sys.executable, str(GUARD), "1", "--", "sh", "-c", "sleep 300 & exit 3"],
                             stdin=subprocess.PIPE, start_new_session=True)
    assert guard.wait(10) == 3  # the command ended by itself: its status, and its child is not left behind
    assert wait_for(lambda: not group_members(guard.pid), 10)
    guard = subprocess.Popen([sys.executable, str(GUARD), "1", "--", "sleep", "300"], stdin=subprocess.PIPE,
                             start_new_session=True)
    assert wait_for(lambda: len(group_members(guard.pid)) == 2, 10)
    guard.stdin.close()  # the caller's way to stop it
    assert guard.wait(10) == 128 + signal.SIGTERM
    assert not group_members(guard.pid)
