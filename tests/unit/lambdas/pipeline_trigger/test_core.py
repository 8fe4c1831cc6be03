"""Event validation and the decision to deploy: Approved deploys it, Rejected-while-live rolls back, one
pipeline per state change (looked up by name before the one POST)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
import responses
from mlops_common import contract
from mlops_common.errors import (
    ConfigError,
    GitLabNotFound,
    GitLabRejected,
    GitLabUnavailable,
    MalformedEvent,
    NoRollbackTarget,
)
from mlops_common.gitlab_client import GitLab
from mlops_common.secrets import StoredTrigger
from pipeline_trigger import core
from pipeline_trigger.config import TriggerConfig

from tests.unit.lambdas.fake_gitlab import FakeGitLab
from tests.unit.lambdas.helpers import API, load_event, sent_json

CFG = TriggerConfig(
    gitlab_url="https://gitlab.example.com",
    trigger_secret_id="arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-mlops/p-abc123def456/deploy-trigger-AbCdEf",
    ca_bundle_uri="",
    deploy_project_id=12,
    deploy_ref="main",
    model_package_group="abalone-p-abc123def456",
)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/abalone-p-abc123def456/3"
TRIGGER = StoredTrigger(
    "glptt-deploy-0123456789", 7, 12, "https://gitlab.example.com", "glpat-read-0123456789", 5, "2027-12-01"
)
LOOKUP = f"{API}/projects/12/pipelines"


def never() -> core.Deployer:
    raise AssertionError("GitLab must not be contacted for this event")


def connect(gl: GitLab, trigger: StoredTrigger = TRIGGER) -> Any:
    return lambda: core.Deployer(gl, gl, trigger)


@pytest.fixture(autouse=True)
def no_pipelines_yet(rsps: responses.RequestsMock) -> None:
    rsps.get(LOOKUP, json=[])


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
    assert [c.request.method for c in rsps.calls] == ["GET", "POST"]
    name = "deploy abalone-p-abc123def456 v3 (Approved at 2026-11-24T12:00:00Z)"
    assert responses.matchers.query_param_matcher({"name": name}, strict_match=False)(rsps.calls[0].request)[
        0
    ]
    sent = sent_json(rsps.calls[1].request)
    assert sent["ref"] == "main" and sent["token"] == TRIGGER.token
    assert sent["variables"] == {
        contract.PIPELINE_VAR_MODEL_PACKAGE_ARN: ARN,
        contract.PIPELINE_VAR_MODEL_PACKAGE_GROUP: "abalone-p-abc123def456",
        contract.PIPELINE_VAR_APPROVAL_STATUS: "Approved",
        contract.PIPELINE_VAR_PIPELINE_NAME: name,
    }


def test_a_repeated_event_starts_nothing_new(gl: GitLab, rsps: responses.RequestsMock) -> None:
    name = "deploy abalone-p-abc123def456 v3 (Approved at 2026-11-24T12:00:00Z)"
    rsps.replace(responses.GET, LOOKUP, json=[{"id": 70, "name": name, "web_url": "https://g/p/70"}])
    result = core.handle(connect(gl), CFG, load_event("model_package_approved"))
    assert result["status"] == "already started" and result["pipeline_id"] == 70
    assert [c.request.method for c in rsps.calls] == ["GET"]


def test_a_pipeline_of_another_change_does_not_count(gl: GitLab, rsps: responses.RequestsMock) -> None:
    # GitLab versions without the name filter return every pipeline: only an exact name counts.
    rsps.replace(responses.GET, LOOKUP, json=[{"id": 70, "name": "deploy other v1", "web_url": "w"}])
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=201, json={"id": 71, "web_url": "w"})
    assert core.handle(connect(gl), CFG, load_event("model_package_approved"))["status"] == "started"


def test_a_secret_without_read_token_is_refused_before_any_call(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    old = StoredTrigger("glptt-deploy-0123456789", 7, 12, "https://gitlab.example.com")
    with pytest.raises(ConfigError, match="no read token"):
        core.handle(connect(gl, old), CFG, load_event("model_package_approved"))
    assert not rsps.calls


def test_the_trigger_never_sends_a_private_token(rsps: responses.RequestsMock) -> None:
    from mlops_common.gitlab_client import GitLabSettings

    tokenless = GitLab(
        GitLabSettings(url="https://gitlab.example.com", token_source="t", max_retries=0), None
    )
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=201, json={"id": 1, "web_url": "w"})
    core.handle(
        lambda: core.Deployer(tokenless, tokenless, TRIGGER), CFG, load_event("model_package_approved")
    )
    assert "PRIVATE-TOKEN" not in rsps.calls[-1].request.headers


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
def test_other_statuses_do_not_deploy_without_a_registry(name: str, caplog: pytest.LogCaptureFixture) -> None:
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


@pytest.fixture
def no_post_retry() -> GitLab:
    from mlops_common.gitlab_client import GitLabSettings

    settings = GitLabSettings(
        url="https://gitlab.example.com", token_source="t", max_retries=2, retry_posts=False
    )
    return GitLab(settings, "glpat-read-0123456789")


def test_a_failed_start_is_raised_and_never_resent(
    no_post_retry: GitLab, rsps: responses.RequestsMock
) -> None:
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=500, json={"message": "500"})
    with pytest.raises(GitLabUnavailable, match=r"failing \(HTTP 500\) after 1 attempt while"):
        core.handle(connect(no_post_retry), CFG, load_event("model_package_approved"))
    assert [c.request.method for c in rsps.calls] == ["GET", "POST"]


def test_a_400_is_not_retried_and_names_the_cause(
    no_post_retry: GitLab, rsps: responses.RequestsMock
) -> None:
    rsps.post(
        f"{API}/projects/12/trigger/pipeline", status=400, json={"message": {"base": ["Reference not found"]}}
    )
    with pytest.raises(GitLabRejected, match=r"400: base Reference not found"):
        core.handle(connect(no_post_retry), CFG, load_event("model_package_approved"))
    assert [c.request.method for c in rsps.calls] == ["GET", "POST"]


class FakeRegistry:
    def __init__(self, live: str, statuses: dict[int, str]) -> None:
        self.live, self.statuses = live, statuses
        self.described: list[str] = []

    def live_in_production(self) -> str:
        return self.live

    def approval_status(self, arn: str) -> str | None:
        self.described.append(arn)
        return self.statuses.get(int(arn.rsplit("/", 1)[1]))


def rejected() -> dict[str, Any]:
    return load_event("model_package_rejected")


def test_rejecting_the_live_package_redeploys_the_previous_approved_version(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    event = rejected()
    arn = event["detail"]["ModelPackageArn"]
    base = arn.rsplit("/", 1)[0]
    version = int(arn.rsplit("/", 1)[1])
    registry = FakeRegistry(arn, {version - 1: "Rejected", version - 2: "Approved"})
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=201, json={"id": 80, "web_url": "w"})
    result = core.handle(connect(gl), CFG, event, registry)
    assert result["status"] == "started" and result["model_package_arn"] == f"{base}/{version - 2}"
    sent = sent_json(rsps.calls[-1].request)["variables"]
    assert sent[contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] == f"{base}/{version - 2}"
    assert sent[contract.PIPELINE_VAR_DEPLOY_REASON].startswith(f"rollback: {arn} was rejected")
    assert sent[contract.PIPELINE_VAR_PIPELINE_NAME].startswith("rollback ")
    assert [c.request.method for c in rsps.calls] == ["GET", "POST"]  # one lookup, one start


def test_rejecting_a_package_that_is_not_live_changes_nothing() -> None:
    registry = FakeRegistry("arn:aws:sagemaker:us-east-1:123456789012:model-package/other/1", {})
    result = core.handle(never, CFG, rejected(), registry)
    assert result["status"] == "ignored" and "not live in production" in result["reason"]
    assert registry.described == []


def test_rejecting_the_live_package_without_an_earlier_approval_says_what_to_do() -> None:
    event = rejected()
    registry = FakeRegistry(event["detail"]["ModelPackageArn"], {})
    with pytest.raises(NoRollbackTarget, match="no earlier version is Approved"):
        core.handle(never, CFG, event, registry)


# --- against the in-memory GitLab: one pipeline per state change ----------------------------------------
APPROVED_NAME = "deploy abalone-p-abc123def456 v3 (Approved at 2026-11-24T12:00:00Z)"
DEPLOY_PATH = "ml-team/abalone-model-deploy"


def deploy_repository() -> tuple[FakeGitLab, TriggerConfig, StoredTrigger]:
    """A deploy repository with a main branch and the trigger the check-in stored."""
    fake = FakeGitLab()
    fake.add_group("ml-team")
    project = fake.add_project(DEPLOY_PATH).info.id
    fake.commit(project, "main", "seed", [{"action": "create", "file_path": "deploy.py", "content": "x"}])
    info, token = fake.create_trigger(project, "approval trigger")
    stored = StoredTrigger(token, info.id, project, fake.url, "glpat-read", 1, "2099-01-01")
    return fake, replace(CFG, deploy_project_id=project), stored


def deliver(fake: FakeGitLab, cfg: TriggerConfig, stored: StoredTrigger) -> dict[str, Any]:
    """One delivery of the approval event (SageMaker's, Lambda's retry or the re-drive)."""
    return core.handle(lambda: core.Deployer(fake, fake, stored), cfg, load_event("model_package_approved"))


def test_a_change_delivered_twice_starts_one_pipeline() -> None:
    fake, cfg, stored = deploy_repository()
    first, again = deliver(fake, cfg, stored), deliver(fake, cfg, stored)
    assert (first["status"], again["status"]) == ("started", "already started")
    assert again["pipeline_id"] == first["pipeline_id"]
    assert [p.id for p in fake.pipelines_named(cfg.deploy_project_id, APPROVED_NAME)] == [
        first["pipeline_id"]
    ]
    started = fake.project(DEPLOY_PATH).pipelines
    assert started[0][3][contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] == ARN


def test_a_start_whose_answer_was_lost_is_found_by_the_next_delivery() -> None:
    fake, cfg, stored = deploy_repository()
    fake.fail("run_trigger", GitLabUnavailable("GitLab failing (HTTP 502) after 1 attempt"), after=True)
    with pytest.raises(GitLabUnavailable):
        deliver(fake, cfg, stored)
    assert deliver(fake, cfg, stored)["status"] == "already started"
    assert len(fake.project(DEPLOY_PATH).pipelines) == 1


def test_a_trigger_token_gitlab_no_longer_has_is_not_found() -> None:
    fake, cfg, stored = deploy_repository()
    fake.delete_trigger(cfg.deploy_project_id, stored.trigger_id)
    with pytest.raises(GitLabNotFound):
        deliver(fake, cfg, stored)
    assert fake.project(DEPLOY_PATH).pipelines == []
