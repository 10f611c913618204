"""A person's click path: open a task in the real labeling page (Debian's Chromium), choose B with strength,
submit, then `pull` finds the label — de-randomised."""

from __future__ import annotations

import time

import pytest

from annotation.labelstudio.accounts import invite
from annotation.labelstudio.sync import ensure_project, pull, push
from preference.schema import Label, Strength
from preference.store import PreferenceStore
from tests.labelstudio_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    make_pairs,
    open_labeling_page,
    requires_chromium,
    requires_label_studio,
    start_server,
)

pytestmark = [pytest.mark.integration, requires_label_studio(), requires_chromium()]


def test_choose_b_with_strength_in_the_browser_then_pull(tmp_path):
    from playwright.sync_api import sync_playwright

    server = start_server(tmp_path / "ls")
    try:
        admin = server.client()
        project = ensure_project(admin, "browser")
        push(admin, project["id"], make_pairs(1))
        (task,) = admin.tasks(project["id"])
        login = invite(admin, "carol@example.com")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = open_labeling_page(browser, server.url, login.email, login.password, project["id"],
                                      task["id"])
            # The answer shown on the right is on the page (a visible match; the task list may hold hidden copies).
            page.get_by_text(task["data"]["answer_b"]).filter(visible=True).first.wait_for(timeout=30_000)
            page.get_by_text("B is better").click()
            page.get_by_text("Strongly").click()
            page.get_by_role("button", name="Submit").click()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not next(admin.tasks(project["id"]))["annotations"]:
                time.sleep(0.5)
            browser.close()
        store = PreferenceStore(tmp_path / "prefs")
        assert pull(admin, project["id"], store).new == 1
        (record,) = store.records()
        shown_b_is = "response_a" if task["data"]["shown_swapped"] else "response_b"
        assert record.label == (Label.A if shown_b_is == "response_a" else Label.B)
        assert getattr(record, shown_b_is) == task["data"]["answer_b"]
        assert record.strength == Strength.STRONG and record.annotator == "carol@example.com"
    finally:
        server.stop()
