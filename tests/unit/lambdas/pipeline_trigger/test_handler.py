"""The trigger handler: one GitLab call per approval, raise on failure, never leak the token."""

from __future__ import annotations

import importlib
import json
import logging
from types import ModuleType
from typing import Any

import pytest
import responses
from mlops_common.errors import ConfigError, GitLabAuthError, MalformedEvent
from pipeline_trigger.config import TriggerConfig

from tests.unit.lambdas.helpers import API, FakeContext, FakeSecrets, load_event, sent_json

TOKEN_ARN = (
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-mlops/p-abc123def456/deploy-trigger-AbCdEf"
)
TOKEN = "glptt-deploy-trigger-0123456789"
READ_TOKEN = "glpat-read-only-0123456789"
STORED = json.dumps(
    {
        "token": TOKEN,
        "trigger_id": 7,
        "project_id": 12,
        "gitlab_url": "https://gitlab.example.com",
        "read_token": READ_TOKEN,
        "read_token_id": 5,
        "read_token_expires": "2099-01-01",
    }
)


@pytest.fixture(autouse=True)
def gitlab_pipelines(rsps: responses.RequestsMock) -> list[dict[str, Any]]:
    """GET /pipelines?name= answers the pipelines started so far with that name."""
    started: list[dict[str, Any]] = []

    def lookup(request: Any) -> tuple[int, dict[str, str], str]:
        name = request.params.get("name")
        return 200, {}, json.dumps([p for p in started if p["name"] == name])

    def start(request: Any) -> tuple[int, dict[str, str], str]:
        variables = json.loads(request.body)["variables"]
        pipeline = {
            "id": 5 + len(started),
            "web_url": "https://g/p/5",
            "name": variables["DEPLOY_PIPELINE_NAME"],
        }
        started.append(pipeline)
        return 201, {}, json.dumps(pipeline)

    rsps.add_callback(
        responses.GET, f"{API}/projects/12/pipelines", callback=lookup, content_type="application/json"
    )
    rsps.add_callback(
        responses.POST, f"{API}/projects/12/trigger/pipeline", callback=start, content_type="application/json"
    )
    return started


ENV = {
    "GITLAB_URL": "https://gitlab.example.com",
    "TRIGGER_TOKEN_SECRET_ARN": TOKEN_ARN,
    "GITLAB_CA_BUNDLE_S3_URI": "",
    "DEPLOY_PROJECT_ID": "12",
    "DEPLOY_REF": "main",
    "MODEL_PACKAGE_GROUP_NAME": "abalone-p-abc123def456",
}


@pytest.fixture
def trigger(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, FakeSecrets]:
    module = importlib.import_module("pipeline_trigger.handler")
    secrets = FakeSecrets({TOKEN_ARN: STORED})
    module.reset()
    monkeypatch.setattr(
        module, "_state", {"config": TriggerConfig.from_env(ENV), "secrets": secrets, "s3": None}
    )
    return module, secrets


def test_approval_starts_one_pipeline_and_returns_no_token(
    trigger: tuple[ModuleType, FakeSecrets], rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    module, secrets = trigger
    result = module.handler(load_event("model_package_approved"), FakeContext(30))
    assert result["pipeline_id"] == 5 and result["web_url"] == "https://g/p/5"
    again = module.handler(load_event("model_package_approved"), FakeContext(30))  # a duplicate event
    assert again["status"] == "already started" and again["pipeline_id"] == 5
    assert [c.request.method for c in rsps.calls] == ["GET", "POST", "GET"]
    assert secrets.calls == 1  # token read once per container
    post = rsps.calls[1].request
    assert "PRIVATE-TOKEN" not in post.headers and sent_json(post)["token"] == TOKEN
    assert rsps.calls[0].request.headers["PRIVATE-TOKEN"] == READ_TOKEN
    for secret in (TOKEN, READ_TOKEN):
        assert secret not in json.dumps(result) and secret not in caplog.text


def test_rejection_does_not_read_the_token_or_call_gitlab(
    trigger: tuple[ModuleType, FakeSecrets], rsps: responses.RequestsMock
) -> None:
    module, secrets = trigger
    assert module.handler(load_event("model_package_rejected"), FakeContext(30))["status"] == "ignored"
    assert not rsps.calls and secrets.calls == 0  # no production stack configured: nothing to roll back


def test_malformed_event_raises(trigger: tuple[ModuleType, FakeSecrets]) -> None:
    module, _ = trigger
    with pytest.raises(MalformedEvent, match="lacks ModelPackageArn"):
        module.handler(load_event("model_package_malformed"), FakeContext(30))


def test_rejected_token_raises_and_is_read_again_next_time(
    trigger: tuple[ModuleType, FakeSecrets], rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    module, secrets = trigger
    rsps.replace(
        responses.POST,
        f"{API}/projects/12/trigger/pipeline",
        status=401,
        json={"message": "401 Unauthorized"},
    )
    for _ in range(2):
        with pytest.raises(
            GitLabAuthError, match="check secret gitlab-mlops/p-abc123def456/deploy-trigger-AbCdEf"
        ):
            module.handler(load_event("model_package_approved"), FakeContext(30))
    assert secrets.calls == 2
    assert TOKEN not in caplog.text


def test_a_placeholder_secret_says_the_check_in_has_not_run(
    trigger: tuple[ModuleType, FakeSecrets], rsps: responses.RequestsMock
) -> None:
    module, secrets = trigger
    secrets.values[TOKEN_ARN] = json.dumps({"state": "pending", "placeholder": "x"})
    with pytest.raises(ConfigError, match="holds no pipeline trigger yet"):
        module.handler(load_event("model_package_approved"), FakeContext(30))
    assert not rsps.calls


def test_missing_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module("pipeline_trigger.handler")
    module.reset()
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="environment variable DEPLOY_PROJECT_ID is missing"):
        module.handler(load_event("model_package_approved"), FakeContext(30))
    module.reset()
