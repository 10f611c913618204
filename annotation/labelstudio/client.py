"""A small Label Studio REST client over `requests`: retries with backoff, clear errors, the token never shown.

Only the endpoints rlhfkit needs. Connection errors and 502/503/504 are retried with exponential backoff (a server
restarting mid-push comes back); other errors raise `LabelStudioError` with the server's message.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import requests

from rlhfkit.core.errors import SetupError

log = logging.getLogger(__name__)

URL_ENV, KEY_ENV = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"
RETRY_STATUS = {502, 503, 504}


class LabelStudioError(SetupError):
    """A Label Studio request failed; the message says which and why (never the token)."""


class LabelStudioAuthError(LabelStudioError):
    pass


class LabelStudioUnavailable(LabelStudioError):
    pass


class LabelStudioClient:
    """`LabelStudioClient(url, token)`; `from_env()` reads LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY."""

    def __init__(self, url: str, token: str, *, retries: int = 6, backoff: float = 0.5, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.session = requests.Session()
        # Legacy tokens ("Token ...") need LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true on the server (set by `serve`).
        self.session.headers["Authorization"] = f"Token {token}"

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"LabelStudioClient({self.url!r})"

    @classmethod
    def from_env(cls) -> LabelStudioClient:
        url, token = os.environ.get(URL_ENV), os.environ.get(KEY_ENV)
        if not url or not token:
            raise LabelStudioError(f"set {URL_ENV} and {KEY_ENV}, or start a local server with `rlhfkit annotate "
                                   "serve`")
        return cls(url, token)

    # -- transport -------------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """Send a request; returns decoded JSON (or None). Retries transient failures when `retry`."""
        url = f"{self.url}{path}"
        attempts = self.retries if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.ConnectionError as exc:
                problem = f"cannot connect ({type(exc).__name__})"
            except requests.Timeout:
                problem = f"no answer within {self.timeout:.0f} s"
            else:
                if response.status_code not in RETRY_STATUS:
                    return self._decode(method, path, response)
                problem = f"HTTP {response.status_code}"
            if attempt < attempts:
                delay = min(self.backoff * 2 ** (attempt - 1), 8.0)
                log.warning("Label Studio %s %s: %s; retrying in %.1f s (%d/%d)", method, path, problem, delay,
                            attempt, attempts - 1)
                time.sleep(delay)
        raise LabelStudioUnavailable(f"Label Studio at {self.url} did not answer {method} {path} after {attempts} "
                                     f"attempt(s): {problem}. Is the server running? Run the command again once it "
                                     "is; finished work is not repeated.")

    def _decode(self, method: str, path: str, response: requests.Response) -> Any:
        if response.status_code == 401:
            raise LabelStudioAuthError(f"Label Studio at {self.url} refused the API token (401). Check {KEY_ENV} "
                                       "(Account & Settings > Legacy Token) and that legacy tokens are enabled.")
        if response.status_code == 403:
            raise LabelStudioAuthError(f"{method} {path}: permission denied (403) for this token's user")
        if response.status_code >= 400:
            detail = response.text[:500].strip()
            raise LabelStudioError(f"{method} {path} failed: HTTP {response.status_code}: {detail}")
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise LabelStudioError(f"{method} {path}: the answer is not JSON (is {self.url} a Label Studio "
                                   "server?)") from exc

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    # -- endpoints -------------------------------------------------------------------------------------------------
    def health(self) -> bool:
        try:
            response = self.session.get(f"{self.url}/health", timeout=5)
        except requests.RequestException:
            return False
        return response.ok

    def whoami(self) -> dict[str, Any]:
        return self.get("/api/current-user/whoami")

    def users(self) -> list[dict[str, Any]]:
        return self.get("/api/users")

    def projects(self) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            data = self.get("/api/projects", params={"page": page, "page_size": 100})
            yield from data["results"]
            if not data.get("next"):
                return
            page += 1

    def project(self, project_id: int) -> dict[str, Any]:
        return self.get(f"/api/projects/{project_id}")

    def validate_config(self, label_config: str) -> None:
        self.post("/api/projects/validate", json={"label_config": label_config})

    def create_project(self, **fields: Any) -> dict[str, Any]:
        # Creating is not idempotent: no automatic retry (the caller looks the project up by title first).
        return self.post("/api/projects", json=fields, retry=False)

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return self.patch(f"/api/projects/{project_id}", json=fields)

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Create tasks; returns their ids. Not retried: `push` re-reads the project after a failure instead."""
        answer = self.post(f"/api/projects/{project_id}/import", params={"return_task_ids": "true"}, json=tasks,
                           retry=False)
        return list(answer.get("task_ids") or [])

    def tasks(self, project_id: int, page_size: int = 500, fields: str = "all") -> Iterator[dict[str, Any]]:
        """Every task of the project, paged; fields="all" includes annotations, "task_only" does not."""
        page = 1
        while True:
            try:
                data = self.get("/api/tasks", params={"project": project_id, "page": page, "page_size": page_size,
                                                      "fields": fields})
            except LabelStudioError as exc:
                if "404" in str(exc) and page > 1:  # past the last page
                    return
                raise
            tasks = data["tasks"] if isinstance(data, dict) else data
            yield from tasks
            if len(tasks) < page_size:
                return
            page += 1

    def create_annotation(self, task_id: int, result: list[dict[str, Any]], *, was_cancelled: bool = False
                          ) -> dict[str, Any]:
        return self.post(f"/api/tasks/{task_id}/annotations/", json={"result": result, "was_cancelled": was_cancelled},
                         retry=False)

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        return self.patch(f"/api/annotations/{annotation_id}/", json={"result": result})

    def invite_url(self) -> str:
        return self.get("/api/invite")["invite_url"]
