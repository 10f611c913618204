"""Helpers for tests that run a real Label Studio server on 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from annotation.labelstudio.server import LocalServer
from preference.pairs import Pair
from rlhfkit.core.settings import label_studio_venv


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def requires_label_studio():
    """Skip when the Label Studio virtualenv is absent (`make test` creates it; CI always has it)."""
    exists = (label_studio_venv() / "bin" / "label-studio").exists()
    return pytest.mark.skipif(not exists, reason=f"Label Studio not installed in {label_studio_venv()} (run make test)")


def start_server(data_dir: Path, port: int | None = None) -> LocalServer:
    server = LocalServer(port=port or free_port(), data_dir=data_dir)
    server.start()
    return server


def make_pairs(n: int) -> list[Pair]:
    """Pairs whose better answer is recognisable from its text ("GOOD"), so tests know the true label."""
    pairs = []
    for i in range(n):
        prompt = f"Question {i}: name a colour." if i % 2 else [{"role": "user", "content": f"Question {i}?"}]
        good, bad = f"GOOD answer {i}.", f"poor answer {i}"
        pairs.append(Pair(prompt, good, bad, {"index": i}) if i % 3 else Pair(prompt, bad, good, {"index": i}))
    return pairs


CHROMIUM = Path("/usr/bin/chromium")
# As the machine notes advise: no background networking (the machine is offline), no sandbox as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def requires_chromium():
    import os

    # CI must run it (the Makefile installs Debian's chromium there): never skip when CI=true.
    missing = not CHROMIUM.exists() and os.environ.get("CI") != "true"
    return pytest.mark.skipif(missing, reason="Debian's chromium is not installed (make test installs it as root)")


def open_labeling_page(browser, url: str, email: str, password: str, project_id: int, task_id: int):
    """Log in like a person and open one task on the labeling page; returns the page."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/user/login/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(lambda u: "/user/login" not in u, timeout=30_000)
    page.goto(f"{url}/projects/{project_id}/data?task={task_id}")
    page.get_by_text("B is better").wait_for(timeout=60_000)
    return page
