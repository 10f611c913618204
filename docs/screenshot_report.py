"""Render a run's report in headless Chromium for the README and docs/pipeline.md:
`python docs/screenshot_report.py [runs/main/report.html]` (after `make run`; needs Debian's chromium).

Saves docs/img/report.png: the top of the page (headline, stages, reward model and its learning curve, policy
before and after).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.labelstudio_support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def main(report: Path = ROOT / "runs" / "main" / "report.html", out: Path = ROOT / "docs" / "img" / "report.png",
         height: int = 2350) -> Path:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1120, "height": height})
        page.goto(report.resolve().as_uri())
        page.screenshot(path=str(out))
        browser.close()
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1])) if len(sys.argv) > 1 else main())
