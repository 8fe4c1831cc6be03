"""Approval trigger end to end: a project seeded by the check-in, then model package events."""

from __future__ import annotations

from typing import Any

import pytest
from mlops_common import contract
from mlops_common.errors import GitLabAuthError, GitLabNotFound, GitLabUnavailable

from tests.integration.lambdas.conftest import World
from tests.unit.lambdas.helpers import load_event

ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/abalone-p-abc123def456/3"


@pytest.fixture
def deploy_id(world: World, checkin: Any) -> str:
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    return str(answer["Data"]["ModelDeployProjectId"])


def test_approval_starts_the_deploy_pipeline_with_the_package(
    world: World, trigger: Any, deploy_id: str
) -> None:
    result = trigger(load_event("model_package_approved"), deploy_id)
    assert result["status"] == "started" and result["model_package_arn"] == ARN
    project = world.gl.projects.get(int(deploy_id))
    pipeline = project.pipelines.get(result["pipeline_id"])
    assert pipeline.ref == "main" and result["web_url"] == pipeline.web_url
    assert pipeline.source == "trigger"  # started with the deploy repository's trigger token
    variables = {v.key: v.value for v in pipeline.variables.list(get_all=True)}
    name = "deploy abalone-p-abc123def456 v3 (Approved at 2026-11-24T12:00:00Z)"
    assert variables == {
        contract.PIPELINE_VAR_MODEL_PACKAGE_ARN: ARN,
        contract.PIPELINE_VAR_MODEL_PACKAGE_GROUP: "abalone-p-abc123def456",
        contract.PIPELINE_VAR_APPROVAL_STATUS: "Approved",
        contract.PIPELINE_VAR_PIPELINE_NAME: name,
    }
    assert pipeline.name == name  # the deploy CI's workflow:name, the key the next event looks up
    assert world.gitlab.token not in str(result)
    # The platform token never left Secrets Manager for this: only the trigger-token call reached GitLab.
    assert world.gitlab.requests("POST", r"/projects/\d+/pipeline$") == []
    assert len(world.gitlab.requests("POST", r"/trigger/pipeline$")) == 1


def test_a_revoked_trigger_is_an_error_until_the_project_is_updated(
    world: World, trigger: Any, checkin: Any, deploy_id: str
) -> None:
    project = world.gl.projects.get(int(deploy_id))
    for item in project.triggers.list(get_all=True):
        project.triggers.delete(item.id)
    with pytest.raises(GitLabNotFound):
        trigger(load_event("model_package_approved"), deploy_id)
    assert checkin(world.event("cfn_update"))["Status"] == "SUCCESS"  # the update makes a new trigger
    assert trigger(load_event("model_package_approved"), deploy_id)["status"] == "started"


@pytest.mark.parametrize("name", ["model_package_pending", "model_package_other_group"])
def test_other_events_start_nothing(world: World, trigger: Any, deploy_id: str, name: str) -> None:
    before = len(world.gitlab.requests())
    assert trigger(load_event(name), deploy_id)["status"] == "ignored"
    assert len(world.gitlab.requests()) == before


def test_gitlab_failure_raises_so_lambda_retries(world: World, trigger: Any, deploy_id: str) -> None:
    world.gitlab.add_fault(r"/trigger/pipeline$", 503, method="POST", count=None)
    with pytest.raises(GitLabUnavailable, match=r"after 1 attempt while starting a pipeline on main"):
        trigger(load_event("model_package_approved"), deploy_id)
    assert len(world.gitlab.requests("POST", r"/trigger/pipeline$")) == 1  # a POST is never re-sent


def test_deleted_deploy_project_raises_before_any_start(world: World, trigger: Any, deploy_id: str) -> None:
    world.gl.projects.delete(int(deploy_id))  # its read token goes with it
    with pytest.raises(GitLabAuthError, match="check secret gitlab-mlops/p-abc123def456/deploy-trigger"):
        trigger(load_event("model_package_approved"), deploy_id)
    assert world.gitlab.requests("POST", r"/trigger/pipeline$") == []
