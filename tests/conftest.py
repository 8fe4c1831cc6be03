"""Fixtures every test tree shares: a real moto server on 127.0.0.1 and an AWS environment pointing at it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import boto3
import pytest
import requests
from botocore.config import Config
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
FAIL_FAST = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server for the whole session; tests that need a clean slate use `aws`."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    requests.post(f"{url}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10)
    yield url
    server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Fresh moto state and an environment where boto3 (and subprocesses) talk only to moto."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    requests.post(f"{moto_server}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=10)
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    yield moto_server


@pytest.fixture
def aws_client(aws: str):  # type: ignore[no-untyped-def]
    """boto3 client factory bound to moto, failing fast on operations moto lacks."""

    def make(service: str):  # type: ignore[no-untyped-def]
        return boto3.client(service, region_name=REGION, endpoint_url=aws, config=FAIL_FAST)

    return make
