"""Run a local Label Studio server in its own virtualenv (it pins openai<2, which conflicts with dspy's litellm).

- bound to 127.0.0.1 unless told otherwise; sign-up only through an invite link;
- SQLite and everything Label Studio writes (it writes under $HOME too) live under the rlhfkit home;
- the admin email, password and API token are generated once and stored 0600 (`credentials.json`);
- a fresh data dir takes ~25 s to migrate, so the first migrated database is kept as a template and copied
  (~4 s start) with SQLite's backup API, which is safe on a live database;
- Label Studio silently moves to the next port when its port is busy, so rlhfkit checks the port first and then
  checks that the server answering is the one it started (its token works);
- stopped with SIGTERM (then SIGKILL after a grace period).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from annotation.labelstudio.client import LabelStudioClient, LabelStudioError
from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.ports import port_is_free
from rlhfkit.core.settings import label_studio_dir, label_studio_venv

log = logging.getLogger(__name__)

LABEL_STUDIO_REQUIREMENT = "label-studio==1.23.2"
DB_NAME = "label_studio.sqlite3"


@dataclasses.dataclass(frozen=True)
class Credentials:
    email: str
    password: str
    token: str

    def __repr__(self) -> str:  # never print the secrets
        return f"Credentials(email={self.email!r}, password=***, token=***)"


def load_credentials(path: Path | None = None, create: bool = True) -> Credentials:
    """The local admin's credentials, generated on first use and stored 0600."""
    path = path or label_studio_dir() / "credentials.json"
    if path.exists():
        data = json.loads(path.read_text())
        return Credentials(data["email"], data["password"], data["token"])
    if not create:
        raise LabelStudioError(f"no local Label Studio credentials at {path}; run `rlhfkit annotate serve` first")
    credentials = Credentials("admin@rlhfkit.local", secrets.token_urlsafe(18), secrets.token_hex(20))
    atomic_write_text(path, json.dumps(dataclasses.asdict(credentials)), mode=0o600)
    return credentials


def server_file() -> Path:
    """Where `rlhfkit annotate serve` records the running server's URL and pid."""
    return label_studio_dir() / "server.json"


def connect_running() -> LabelStudioClient | None:
    """A client for the server named by LABEL_STUDIO_URL + LABEL_STUDIO_API_KEY, else for the one `rlhfkit annotate
    serve` started (if it still answers), else None."""
    from annotation.labelstudio.client import KEY_ENV, URL_ENV

    if os.environ.get(URL_ENV) or os.environ.get(KEY_ENV):
        return LabelStudioClient.from_env()
    if not server_file().exists():
        return None
    client = LabelStudioClient(json.loads(server_file().read_text())["url"], load_credentials(create=False).token,
                               retries=1)
    return client if client.health() else None


def ensure_installed(venv: Path | None = None) -> Path:
    """The `label-studio` executable, creating its virtualenv first if needed (one pip install, ~1 minute)."""
    venv = venv or label_studio_venv()
    executable = venv / "bin" / "label-studio"
    if executable.exists():
        return executable
    log.info("installing %s into its own virtualenv %s (once, about a minute)", LABEL_STUDIO_REQUIREMENT, venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    LABEL_STUDIO_REQUIREMENT], check=True)
    return executable


class LocalServer:
    """A Label Studio process on `host:port` with its data in `data_dir` (default: under the rlhfkit home)."""

    def __init__(self, port: int = 8080, host: str = "127.0.0.1", data_dir: Path | None = None,
                 venv: Path | None = None, credentials: Credentials | None = None):
        self.port, self.host = port, host
        root = label_studio_dir()
        self.data_dir = Path(data_dir) if data_dir else root / "data"
        self.venv = venv
        self.credentials = credentials or load_credentials()
        # The template holds the admin account, so it only fits the credentials it was made with.
        account = hashlib.sha256(f"{self.credentials.email}:{self.credentials.token}".encode()).hexdigest()[:10]
        self.template = root / f"template-{LABEL_STUDIO_REQUIREMENT.split('==')[1]}-{account}.sqlite3"
        self.log_path = self.data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> LabelStudioClient:
        return LabelStudioClient(self.url, self.credentials.token)

    def _environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("LABEL_STUDIO_")}
        home = self.data_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env.update({
            "HOME": str(home),
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": self.credentials.email,
            "LABEL_STUDIO_PASSWORD": self.credentials.password,
            "LABEL_STUDIO_USER_TOKEN": self.credentials.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # "Authorization: Token ..." for the API
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            # Offline and quiet: no usage analytics, version checks or error reports leave this machine.
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        })
        return env

    def start(self, timeout: float = 240.0) -> LabelStudioClient:
        """Start the server and wait until it answers with our token; returns a client for it."""
        if not port_is_free(self.host, self.port):
            raise LabelStudioError(f"port {self.port} on {self.host} is in use (another server?); Label Studio "
                                   "would silently move to another port, so choose a free one with --port")
        executable = ensure_installed(self.venv)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fresh = not (self.data_dir / DB_NAME).exists()
        if fresh and self.template.exists():
            shutil.copyfile(self.template, self.data_dir / DB_NAME)  # migrated already: starts in seconds
        command = [str(executable), "start", "--no-browser", "--internal-host", self.host, "--port", str(self.port),
                   "--data-dir", str(self.data_dir)]
        with open(self.log_path, "ab") as log_file:
            # A new session: stop() signals the whole process group, children included.
            self.process = subprocess.Popen(command, env=self._environment(), stdout=log_file,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabelStudioError(f"Label Studio exited with code {self.process.returncode} while starting; "
                                       f"last lines of {self.log_path}:\n{self.log_tail()}")
            if client.health():
                try:
                    if client.whoami().get("email") == self.credentials.email:
                        break
                except LabelStudioError:
                    pass
            time.sleep(0.5)
        else:
            self.stop()
            raise LabelStudioError(f"Label Studio did not come up on {self.url} within {timeout:.0f} s; see "
                                   f"{self.log_path}")
        if fresh and not self.template.exists():
            self._save_template()
        return client

    def _save_template(self) -> None:
        tmp = self.template.with_suffix(".tmp")
        with sqlite3.connect(self.data_dir / DB_NAME) as source, sqlite3.connect(tmp) as target:
            source.backup(target)
        os.replace(tmp, self.template)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the server's process group; SIGKILL if it has not exited after `grace` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
