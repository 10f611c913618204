"""Fixtures of the annotation tests."""

from __future__ import annotations

import pytest

from tests.labelstudio_support import start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real Label Studio server on 127.0.0.1 for one test module, stopped with SIGTERM afterwards."""
    server = start_server(tmp_path_factory.mktemp("labelstudio"))
    yield server
    server.stop()
    assert server.process.returncode is not None  # SIGTERM ended it
