"""Shared fixtures: a moto server on 127.0.0.1 and small Abalone-shaped data."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer
from support import use_fresh_moto


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    # moto's Werkzeug logs every S3 request; a failing test's report should show the failure instead.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fresh moto state; boto3 in this process and in subprocesses talks only to moto."""
    return use_fresh_moto(moto_server, monkeypatch)
