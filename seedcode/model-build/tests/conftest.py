"""Shared fixtures: a moto server on 127.0.0.1 and small Abalone-shaped data."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import requests
from moto.server import ThreadedMotoServer
from support import REGION


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
    return use_moto(moto_server, monkeypatch)


def use_moto(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    for key in list(os.environ):
        if key.startswith("AWS_") or key.startswith("SAGEMAKER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    return moto_server
