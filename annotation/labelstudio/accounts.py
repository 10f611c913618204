"""Annotator accounts through Label Studio's invite flow.

The API cannot set a user's password, but the organisation's invite link + the sign-up form can: rlhfkit fills the
form (with its CSRF token) exactly as a person would, then asks the new session for the user's API token.
"""

from __future__ import annotations

import dataclasses
import html
import re
import secrets

import requests

from annotation.labelstudio.client import LabelStudioClient, LabelStudioError


@dataclasses.dataclass(frozen=True)
class Login:
    email: str
    password: str
    token: str  # the annotator's own API token (for scripted annotation); never printed

    def __repr__(self) -> str:
        return f"Login(email={self.email!r}, password=***, token=***)"


def _form_errors(page: str) -> str:
    # Django renders field errors in <ul class="errorlist"> or similar; keep the text only.
    found = re.findall(r'class="[^"]*error[^"]*"[^>]*>(.*?)</', page, flags=re.S | re.I)
    messages = [html.unescape(re.sub(r"<[^>]+>", "", m)).strip() for m in found]
    return "; ".join(m for m in messages if m) or "the sign-up form was not accepted"


def invite(client: LabelStudioClient, email: str, password: str | None = None) -> Login:
    """Create an annotator account (invite link + sign-up form); returns its login."""
    password = password or secrets.token_urlsafe(12)
    signup = f"{client.url}{client.invite_url()}"
    with requests.Session() as browser:
        page = browser.get(signup, timeout=30)
        csrf = browser.cookies.get("csrftoken")
        if page.status_code != 200 or not csrf:
            raise LabelStudioError(f"the sign-up page {client.url}/user/signup/ did not load (HTTP {page.status_code})")
        answer = browser.post(signup, data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
                              headers={"Referer": signup}, allow_redirects=False, timeout=30)
        if answer.status_code != 302:
            raise LabelStudioError(f"could not create {email}: {_form_errors(answer.text)}")
        token = browser.get(f"{client.url}/api/current-user/token", timeout=30)
        if token.status_code != 200:
            raise LabelStudioError(f"{email} was created but its API token could not be read (HTTP "
                                   f"{token.status_code})")
    return Login(email, password, token.json()["token"])
