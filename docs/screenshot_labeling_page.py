"""Render the labeling page in headless Chromium for docs/annotation.md: `python docs/screenshot_labeling_page.py`.

Starts a throw-away Label Studio (needs `make setup` and Debian's chromium), pushes one pair, logs in as an
invited annotator and saves docs/img/labeling-page.png.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotation.labelstudio.accounts import invite  # noqa: E402
from annotation.labelstudio.sync import ensure_project, push  # noqa: E402
from preference.pairs import Pair  # noqa: E402
from tests.labelstudio_support import CHROMIUM, CHROMIUM_ARGS, open_labeling_page, start_server  # noqa: E402

PAIR = Pair(
    "Write a two-sentence description of a reusable water bottle. Do not use any commas.",
    "This steel bottle keeps drinks cold for a whole day. It fits in every bag and never leaks.",
    "This bottle is light, sturdy, and stylish. It keeps water cold, and it is easy to clean, too.",
)


def main(out: Path = ROOT / "docs" / "img" / "labeling-page.png") -> Path:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "ls")
        try:
            admin = server.client()
            project = ensure_project(admin, "rlhfkit preferences")
            push(admin, project["id"], [PAIR])
            (task,) = admin.tasks(project["id"])
            login = invite(admin, "annotator@example.com")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = open_labeling_page(browser, server.url, login.email, login.password, project["id"], task["id"])
                # The better answer (no commas) is shown on the side the shuffle put it on.
                better = "B" if task["data"]["shown_swapped"] else "A"
                page.get_by_text(f"{better} is better").click()
                page.get_by_text("Clearly").click()
                page.screenshot(path=str(out))
                browser.close()
        finally:
            server.stop()
    return out


if __name__ == "__main__":
    print(main())
