"""The crhelper handler: what CloudFormation receives for each outcome, and that the token never leaks."""

from __future__ import annotations

import importlib
import json
import logging
from types import ModuleType
from typing import Any

import pytest
import requests
import responses
from crhelper.resource_helper import CfnResource

from tests.unit.lambdas.helpers import (
    API,
    BUILD_FILES,
    DEPLOY_FILES,
    TOKEN,
    FakeCloudFormation,
    FakeContext,
    FakeS3,
    FakeSecrets,
    load_event,
    make_zip,
    project_json,
)

TOKEN_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-mlops-platform/gitlab-token-AbCdEf"
TRIGGER_ARN = load_event("cfn_create")["ResourceProperties"]["DeployTriggerSecretArn"]
PENDING = json.dumps({"state": "pending", "placeholder": "Abc123"})
BUILD_URL, DEPLOY_URL = (
    f"{API}/projects/ml-team%2Fabalone-model-build",
    f"{API}/projects/ml-team%2Fabalone-model-deploy",
)
PHYSICAL_ID = "gitlab.example.com|ml-team/abalone-model-build|ml-team/abalone-model-deploy"


class Checkin:
    def __init__(self, module: ModuleType, sent: list[dict[str, Any]], secrets: FakeSecrets) -> None:
        self.module, self.sent, self.secrets = module, sent, secrets
        self.cfn = FakeCloudFormation()

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.module.handler(event, FakeContext(60))
        assert len(self.sent) == 1, "exactly one answer per request"
        return self.sent.pop()


@pytest.fixture
def checkin(monkeypatch: pytest.MonkeyPatch) -> Checkin:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    module = importlib.import_module("seedcode_checkin.handler")
    sent: list[dict[str, Any]] = []
    original = CfnResource._send  # type: ignore[attr-defined]  # crhelper's private sender, captured

    def send(status: str | None = None, reason: str = "", send_response: Any = None) -> None:
        original(module.helper, status, reason, send_response=lambda url, body, verify: sent.append(body))

    monkeypatch.setattr(module.helper, "_send", send)
    monkeypatch.setattr(module.helper, "_sleep_on_delete", 0)
    props = load_event("cfn_create")["ResourceProperties"]
    s3 = FakeS3(
        {
            props["ModelBuildSeedKey"]: make_zip(BUILD_FILES),
            props["ModelDeploySeedKey"]: make_zip(DEPLOY_FILES),
        }
    )
    secrets = FakeSecrets(
        {TOKEN_ARN: json.dumps({"token": TOKEN}), TRIGGER_ARN: PENDING},
        {TOKEN_ARN: {"gitlab-mlops:gitlab-url": "https://gitlab.example.com"}},
    )
    checkin = Checkin(module, sent, secrets)
    monkeypatch.setattr(module, "CLIENTS", module.Clients(s3=s3, secrets=secrets, cloudformation=checkin.cfn))
    return checkin


def fresh_gitlab(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/groups/ml-team", json={"id": 3, "full_path": "ml-team"})
    rsps.get(BUILD_URL, status=404, json={"message": "404"})
    rsps.get(DEPLOY_URL, status=404, json={"message": "404"})

    def create(request: Any) -> tuple[int, dict[str, str], str]:
        data = json.loads(request.body)
        pid = 11 if data["path"].endswith("build") else 12
        return 201, {}, json.dumps(project_json(pid, f"ml-team/{data['path']}", data["topics"]))

    rsps.add_callback(responses.POST, f"{API}/projects", callback=create, content_type="application/json")
    for pid in (11, 12):
        rsps.get(f"{API}/projects/{pid}/variables", json=[])
        rsps.post(f"{API}/projects/{pid}/variables", status=201, json={})
        rsps.get(f"{API}/projects/{pid}/repository/branches/main", status=404, json={"message": "404"})
        rsps.post(f"{API}/projects/{pid}/repository/commits", status=201, json={"id": "c0ffee"})
        rsps.get(
            f"{API}/projects/{pid}/protected_branches/main", status=404, json={"message": "404 Not found"}
        )
        rsps.post(f"{API}/projects/{pid}/protected_branches", status=201, json={"name": "main"})
    rsps.put(f"{API}/projects/12", json={})
    rsps.put(f"{API}/projects/11", json={})
    rsps.get(f"{API}/projects/12/triggers", json=[])
    rsps.post(
        f"{API}/projects/12/triggers",
        status=201,
        json={"id": 7, "token": "glptt-deploy-0123456789", "description": "d"},
    )
    rsps.post(
        f"{API}/projects/12/access_tokens", status=201, json={"id": 5, "token": "glpat-read-0123456789"}
    )


@pytest.fixture(autouse=True)
def token_expiry(rsps: responses.RequestsMock) -> None:
    """The platform token expires in ten years unless a test says otherwise."""
    rsps.get(f"{API}/personal_access_tokens/self", json={"id": 1, "expires_at": "2036-01-01"})


def test_create_answers_success_with_stable_id_and_data(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    fresh_gitlab(rsps)
    answer = checkin(load_event("cfn_create"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == PHYSICAL_ID
    assert answer["Data"]["ModelDeployProjectId"] == "12"
    assert (
        answer["Data"]["ModelBuildCloneUrl"] == "https://gitlab.example.com/ml-team/abalone-model-build.git"
    )
    assert len(json.dumps(answer)) < 4096
    stored = json.loads(checkin.secrets.values[TRIGGER_ARN])
    assert stored == {
        "token": "glptt-deploy-0123456789",
        "trigger_id": 7,
        "project_id": 12,
        "gitlab_url": "https://gitlab.example.com",
        "read_token": "glpat-read-0123456789",
        "read_token_id": 5,
        "read_token_expires": stored["read_token_expires"],
    }
    assert "glptt-deploy-0123456789" not in json.dumps(answer)
    assert "glpat-read-0123456789" not in json.dumps(answer)
    assert answer["Data"]["GitLabTokenWarning"] == "none"


def test_a_token_expiring_soon_is_named_in_the_reason_and_outputs(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    import datetime as dt

    fresh_gitlab(rsps)
    soon = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    rsps.replace(responses.GET, f"{API}/personal_access_tokens/self", json={"id": 1, "expires_at": soon})
    answer = checkin(load_event("cfn_create"))
    assert answer["Status"] == "SUCCESS"
    assert f"expires on {soon} (in 10 days)" in answer["Reason"]
    assert answer["Data"]["GitLabTokenWarning"] == answer["Reason"]


def test_an_expired_token_fails_with_the_fix(checkin: Checkin, rsps: responses.RequestsMock) -> None:
    rsps.replace(
        responses.GET, f"{API}/personal_access_tokens/self", json={"id": 1, "expires_at": "2020-01-01"}
    )
    answer = checkin(load_event("cfn_create"))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("the platform GitLab token expired on 2020-01-01")
    assert answer["PhysicalResourceId"]  # the product answers, with an id


def test_a_gitlab_url_the_token_is_not_bound_to_fails_before_the_token_is_read(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    event = load_event("cfn_create")
    event["ResourceProperties"]["GitLabUrl"] = "https://attacker.example.com"
    answer = checkin(event)
    assert answer["Status"] == "FAILED"
    assert "is not the server the platform token belongs to (https://gitlab.example.com" in answer["Reason"]
    assert checkin.secrets.calls == 0 and not rsps.calls


def test_an_unbound_token_secret_fails_with_the_fix(checkin: Checkin, rsps: responses.RequestsMock) -> None:
    checkin.secrets.tags.clear()
    answer = checkin(load_event("cfn_create"))
    assert answer["Status"] == "FAILED" and answer["Reason"].endswith("binds the token to one server)")
    assert checkin.secrets.calls == 0 and not rsps.calls


def test_rejected_token_fails_with_the_secret_to_check_and_is_read_again_next_time(
    checkin: Checkin, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.get(f"{API}/groups/ml-team", status=401, json={"message": "401 Unauthorized"})
    answer = checkin(load_event("cfn_create"))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("GitLab token rejected (401)")
    assert answer["Reason"].endswith("check secret gitlab-mlops-platform/gitlab-token-AbCdEf")
    assert not any(r.exc_info for r in caplog.records)  # expected errors: no stack trace
    checkin(load_event("cfn_create"))
    assert checkin.secrets.calls == 2  # the cached token was dropped after the 401


def test_a_group_the_token_cannot_see_fails_and_the_token_is_read_again_next_time(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    # GitLab answers 404 for a group the token may not see: a replaced token may fix it.
    rsps.get(f"{API}/groups/ml-team", status=404, json={"message": "404 Group Not Found"})
    answer = checkin(load_event("cfn_create"))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == "GitLab group 'ml-team' not found (404): check the GitLabGroup parameter"
    checkin(load_event("cfn_create"))
    assert checkin.secrets.calls == 2


def test_bad_properties_fail_readably_without_calling_gitlab(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    event = load_event("cfn_create")
    event["ResourceProperties"]["DeletionPolicy"] = "purge"
    answer = checkin(event)
    assert answer["Status"] == "FAILED"
    assert (
        answer["Reason"]
        == "resource property DeletionPolicy is 'purge': expected one of retain, archive, delete"
    )
    assert not rsps.calls and checkin.secrets.calls == 0


def test_missing_group_names_the_parameter(checkin: Checkin, rsps: responses.RequestsMock) -> None:
    event = load_event("cfn_create")
    event["ResourceProperties"]["GitLabGroup"] = "ml/team"
    rsps.get(f"{API}/groups/ml%2Fteam", status=404, json={"message": "404 Group Not Found"})
    answer = checkin(event)
    assert answer["Reason"] == "GitLab group 'ml/team' not found (404): check the GitLabGroup parameter"


def test_failed_update_keeps_the_physical_id(checkin: Checkin, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/groups/ml-team", status=503, json={"message": "503"})
    answer = checkin(load_event("cfn_update"))
    assert answer["Status"] == "FAILED" and answer["PhysicalResourceId"] == PHYSICAL_ID
    assert answer["Reason"].endswith("try again later")


def test_delete_with_retain_keeps_the_repositories_and_revokes_the_trigger(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    from seedcode_checkin import core

    marker, owner = core.resource_topic(PHYSICAL_ID), "sagemaker-project-p-abc123def456"
    rsps.get(BUILD_URL, json=project_json(11, "ml-team/abalone-model-build", [owner, marker]))
    rsps.get(DEPLOY_URL, json=project_json(12, "ml-team/abalone-model-deploy", [owner, marker]))
    rsps.get(
        f"{API}/projects/12/triggers",
        json=[{"id": 7, "description": "SageMaker project p-abc123def456 approval trigger"}],
    )
    rsps.delete(f"{API}/projects/12/triggers/7", status=204)
    event = load_event("cfn_delete")
    event["ResourceProperties"]["DeletionPolicy"] = "retain"
    answer = checkin(event)
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", PHYSICAL_ID)
    methods = [c.request.method for c in rsps.calls]
    assert methods.count("DELETE") == 1 and "POST" not in methods and "PUT" not in methods


STAGING_STACK = "abalone-p-abc123def456-deploy-staging"
PROD_STACK = "abalone-p-abc123def456-deploy-prod"


def test_delete_removes_the_deploy_stacks_and_says_so(checkin: Checkin, rsps: responses.RequestsMock) -> None:
    rsps.get(BUILD_URL, status=404, json={"message": "404"})
    rsps.get(DEPLOY_URL, status=404, json={"message": "404"})
    checkin.cfn.stacks.update({STAGING_STACK: "UPDATE_COMPLETE", PROD_STACK: "CREATE_COMPLETE"})
    answer = checkin(load_event("cfn_delete"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert checkin.cfn.deleted == [STAGING_STACK, PROD_STACK]
    assert answer["Reason"] == f"deploy stacks deleted: {STAGING_STACK}, {PROD_STACK}"


def test_a_deploy_stack_that_cannot_be_deleted_fails_before_any_repository_is_touched(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    checkin.cfn.stacks[PROD_STACK] = "DELETE_FAILED"
    checkin.cfn.delete_stack = lambda StackName: None  # type: ignore[method-assign]  # noqa: ARG005, N803
    answer = checkin(load_event("cfn_delete"))
    assert answer["Status"] == "FAILED"
    assert f"deploy stack {PROD_STACK} failed to delete" in answer["Reason"]
    assert not rsps.calls  # the repositories are kept for the retry


def test_retained_deploy_stacks_are_listed_in_the_answer(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    rsps.get(BUILD_URL, status=404, json={"message": "404"})
    rsps.get(DEPLOY_URL, status=404, json={"message": "404"})
    checkin.cfn.stacks[PROD_STACK] = "UPDATE_COMPLETE"
    event = load_event("cfn_delete")
    event["ResourceProperties"]["DeployStackDeletionPolicy"] = "retain"
    answer = checkin(event)
    assert answer["Status"] == "SUCCESS" and not checkin.cfn.deleted
    assert answer["Reason"].startswith(f"deploy stacks retained, still billing: {PROD_STACK}")


def test_delete_with_retain_succeeds_when_gitlab_is_unreachable(
    checkin: Checkin, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.get(BUILD_URL, body=requests.exceptions.ConnectionError(OSError(113, "No route to host")))
    event = load_event("cfn_delete")
    event["ResourceProperties"]["DeletionPolicy"] = "retain"
    assert checkin(event)["Status"] == "SUCCESS"
    assert "could not revoke the approval trigger" in caplog.text


def test_delete_with_unreachable_gitlab_answers_failed_promptly(
    checkin: Checkin, rsps: responses.RequestsMock
) -> None:
    rsps.get(BUILD_URL, body=requests.exceptions.ConnectionError(OSError(113, "No route to host")))
    event = load_event("cfn_delete")
    event["ResourceProperties"]["DeletionPolicy"] = "delete"
    answer = checkin(event)
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("GitLab at https://gitlab.example.com unreachable after 3 attempts")
    assert answer["Reason"].endswith("No route to host")


def test_delete_of_never_valid_properties_is_success(checkin: Checkin, rsps: responses.RequestsMock) -> None:
    event = load_event("cfn_delete")
    event["ResourceProperties"]["GitLabUrl"] = "http://insecure.example.com"
    event["PhysicalResourceId"] = "SC-stack_SeedRepositories_ABCDEFGH"
    assert checkin(event)["Status"] == "SUCCESS"
    assert not rsps.calls


def test_long_reasons_keep_their_start_and_end(checkin: Checkin) -> None:
    reason = checkin.module.fit_reason("A" * 150 + "middle" * 40 + "check the GitLabGroup parameter")
    assert len(reason) <= 256
    assert reason.startswith("A" * 50) and reason.endswith("check the GitLabGroup parameter")


def test_token_never_appears_in_logs_or_answers(
    checkin: Checkin, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fresh_gitlab(rsps)
    answers = [checkin(load_event("cfn_create"))]
    rsps.replace(responses.GET, f"{API}/groups/ml-team", status=401, json={"message": "401"})
    answers.append(checkin(load_event("cfn_create")))
    answers.append(checkin(load_event("cfn_delete")))
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # debug logging was really on
    assert TOKEN not in caplog.text
    assert TOKEN not in json.dumps(answers)
    assert all(TOKEN not in str(r.args) for r in caplog.records)
