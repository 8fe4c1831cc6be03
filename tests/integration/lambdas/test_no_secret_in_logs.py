"""No secret in any log at any level: botocore and urllib3 DEBUG included (against moto)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from mlops_common import logsafe, secrets

from tests.integration.lambdas.conftest import World


def test_the_sdk_and_http_libraries_never_log_below_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in logsafe.CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    logsafe.install()
    assert all(logging.getLogger(n).getEffectiveLevel() >= logging.WARNING for n in logsafe.CHATTY_LIBRARIES)


def test_forced_botocore_and_urllib3_debug_output_is_scrubbed(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Even when someone turns the SDK's DEBUG on again, its response bodies and headers are redacted."""
    logsafe.install()
    for name in logsafe.CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    client: Any = world.aws_client("secretsmanager")
    trigger_token = "glptt-not-yet-registered-0123"
    stored = {
        "token": trigger_token,
        "trigger_id": 7,
        "project_id": 2,
        "gitlab_url": "https://g",
    }
    client.put_secret_value(SecretId=world.trigger_arn, SecretString=json.dumps(stored))
    secrets.clear_cache()
    try:
        secrets.read_secret_string(client, world.token_arn, "test")
        secrets.read_secret_string(client, world.trigger_arn, "test")
    finally:
        logsafe.quiet_libraries()
    assert any(r.name.startswith("botocore") and r.levelno == logging.DEBUG for r in caplog.records)
    assert "SecretString" in caplog.text  # the bodies were logged ...
    assert world.gitlab.token not in caplog.text  # ... without the values
    assert trigger_token not in caplog.text
    assert "X-Amz-Security-Token" not in caplog.text or "X-Amz-Security-Token': b'***'" in caplog.text
