"""Event validation and the decision to deploy (only Approved, only our group)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import responses
from mlops_common import contract
from mlops_common.errors import ConfigError, GitLabNotFound, GitLabRejected, GitLabUnavailable, MalformedEvent
from mlops_common.gitlab_client import GitLab
from mlops_common.secrets import StoredTrigger
from pipeline_trigger import core
from pipeline_trigger.config import TriggerConfig

from tests.unit.lambdas.helpers import API, load_event

CFG = TriggerConfig(
    gitlab_url="https://gitlab.example.com",
    trigger_secret_id="arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-mlops/p-abc123def456/deploy-trigger-AbCdEf",
    ca_bundle_uri="",
    deploy_project_id=12,
    deploy_ref="main",
    model_package_group="abalone-p-abc123def456",
)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/abalone-p-abc123def456/3"
TRIGGER = StoredTrigger("glptt-deploy-0123456789", 7, 12, "https://gitlab.example.com")


def never() -> tuple[GitLab, StoredTrigger]:
    raise AssertionError("GitLab must not be contacted for this event")


def connect(gl: GitLab, trigger: StoredTrigger = TRIGGER) -> Any:
    return lambda: (gl, trigger)


def test_approved_event_starts_the_deploy_pipeline_with_the_package(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    rsps.post(
        f"{API}/projects/12/trigger/pipeline",
        status=201,
        json={"id": 77, "web_url": "https://g/ml/d/-/pipelines/77"},
    )
    result = core.handle(connect(gl), CFG, load_event("model_package_approved"))
    assert result == {
        "status": "started",
        "pipeline_id": 77,
        "web_url": "https://g/ml/d/-/pipelines/77",
        "model_package_arn": ARN,
    }
    assert len(rsps.calls) == 1
    sent = json.loads(rsps.calls[0].request.body or b"{}")
    assert sent["ref"] == "main" and sent["token"] == TRIGGER.token
    assert sent["variables"] == {
        contract.PIPELINE_VAR_MODEL_PACKAGE_ARN: ARN,
        contract.PIPELINE_VAR_MODEL_PACKAGE_GROUP: "abalone-p-abc123def456",
        contract.PIPELINE_VAR_APPROVAL_STATUS: "Approved",
    }


def test_the_trigger_never_sends_a_private_token(rsps: responses.RequestsMock) -> None:
    from mlops_common.gitlab_client import GitLabSettings

    tokenless = GitLab(
        GitLabSettings(url="https://gitlab.example.com", token_source="t", max_retries=0), None
    )
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=201, json={"id": 1, "web_url": "w"})
    core.handle(connect(tokenless), CFG, load_event("model_package_approved"))
    assert "PRIVATE-TOKEN" not in rsps.calls[0].request.headers


@pytest.mark.parametrize(
    "stored",
    [
        StoredTrigger("glptt-x", 7, 99, "https://gitlab.example.com"),
        StoredTrigger("glptt-x", 7, 12, "https://evil.example.com"),
    ],
)
def test_a_trigger_token_of_another_project_or_server_is_refused_before_use(
    gl: GitLab, rsps: responses.RequestsMock, stored: StoredTrigger
) -> None:
    with pytest.raises(ConfigError, match="update the SageMaker project"):
        core.handle(connect(gl, stored), CFG, load_event("model_package_approved"))
    assert not rsps.calls


def test_a_revoked_trigger_token_is_a_clear_error(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=404, json={"message": "404 Not Found"})
    with pytest.raises(GitLabNotFound, match="check DEPLOY_PROJECT_ID"):
        core.handle(connect(gl), CFG, load_event("model_package_approved"))


@pytest.mark.parametrize("name", ["model_package_rejected", "model_package_pending"])
def test_other_statuses_do_not_deploy(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    result = core.handle(never, CFG, load_event(name))
    assert result["status"] == "ignored"
    assert "not deploying" in caplog.text


def test_other_groups_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    result = core.handle(never, CFG, load_event("model_package_other_group"))
    assert result == {
        "status": "ignored",
        "reason": "other model package group",
        "model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/fraud-p-zzz999/1",
    }
    assert "fraud-p-zzz999" in caplog.text


def mutate(**changes: Any) -> dict[str, Any]:
    event = load_event("model_package_approved")
    for key, value in changes.items():
        if key.startswith("detail_"):
            event["detail"][key.removeprefix("detail_")] = value
        else:
            event[key] = value
    return event


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (load_event("model_package_malformed"), "event detail lacks ModelPackageArn"),
        (mutate(source="aws.s3"), "unexpected event 'aws.s3'"),
        (mutate(**{"detail-type": "Other"}), "check the EventBridge rule"),
        (mutate(detail=None), "no 'detail' object"),
        (mutate(detail_ModelApprovalStatus=3), "lacks ModelApprovalStatus"),
        (mutate(detail_ModelPackageArn="arn:aws:s3:::b/k"), "is not a model package ARN"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_malformed_events_raise_a_clear_error(event: Any, fragment: str) -> None:
    with pytest.raises(MalformedEvent, match=fragment):
        core.handle(never, CFG, event)


def test_gitlab_failure_is_raised_not_returned(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=500, json={"message": "500"})
    with pytest.raises(GitLabUnavailable, match=r"failing \(HTTP 500\) after 3 attempts"):
        core.handle(connect(gl), CFG, load_event("model_package_approved"))


def test_missing_branch_names_the_settings(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.post(
        f"{API}/projects/12/trigger/pipeline", status=400, json={"message": {"base": ["Reference not found"]}}
    )
    with pytest.raises(GitLabRejected, match=r"400: base Reference not found"):
        core.handle(connect(gl), CFG, load_event("model_package_approved"))
