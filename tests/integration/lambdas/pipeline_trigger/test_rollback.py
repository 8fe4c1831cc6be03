"""Rollback by rejecting: the trigger against moto (registry, production deploy stack) and the stand-in.

Rejecting the package the production stack serves starts the deploy pipeline with the previous Approved
version (one GitLab start, the reason in its variables); rejecting any other package changes nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlops_common import contract

from tests.integration.lambdas.conftest import World
from tests.unit.lambdas.helpers import load_event

GROUP = "abalone-p-abc123def456"
PROD_STACK = contract.deploy_stack_name("abalone", "p-abc123def456", "prod")
# A stand-in for the model-deploy seed's stack: the output the trigger reads is what matters here.
STACK = {
    "Parameters": {"ModelPackageArn": {"Type": "String"}},
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {contract.DEPLOY_STACK_PACKAGE_OUTPUT: {"Value": {"Ref": "ModelPackageArn"}}},
}


@pytest.fixture
def deploy_id(world: World, checkin: Any) -> str:
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    return str(answer["Data"]["ModelDeployProjectId"])


@pytest.fixture
def versions(world: World) -> list[str]:
    """Versions 1..4 of the group: Approved, Approved, Rejected, Approved (4 is live in production)."""
    sm = world.aws_client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    arns = []
    for status in ("Approved", "Approved", "Rejected", "Approved"):
        arns.append(
            sm.create_model_package(
                ModelPackageGroupName=GROUP,
                ModelApprovalStatus=status,
                InferenceSpecification={
                    "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"}],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            )["ModelPackageArn"]
        )
    world.aws_client("cloudformation").create_stack(
        StackName=PROD_STACK,
        TemplateBody=json.dumps(STACK),
        Parameters=[{"ParameterKey": "ModelPackageArn", "ParameterValue": arns[3]}],
    )
    return arns


def rejection(world: World, arn: str) -> dict[str, Any]:
    sm = world.aws_client("sagemaker")
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected")
    event = load_event("model_package_rejected")
    event["detail"].update(ModelPackageArn=arn, ModelPackageVersion=int(arn.rsplit("/", 1)[1]))
    return event


def test_rejecting_the_live_version_redeploys_the_previous_approved_one(
    world: World, trigger: Any, deploy_id: str, versions: list[str]
) -> None:
    result = trigger(rejection(world, versions[3]), deploy_id, prod_stack=PROD_STACK)
    assert result["status"] == "started"
    assert result["model_package_arn"] == versions[1]  # v3 is Rejected: v2 is the previous approval
    pipeline = world.gl.projects.get(int(deploy_id)).pipelines.get(result["pipeline_id"])
    variables = {v.key: v.value for v in pipeline.variables.list(get_all=True)}
    assert variables[contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] == versions[1]
    assert variables[contract.PIPELINE_VAR_DEPLOY_REASON] == (
        f"rollback: {versions[3]} was rejected while live in production; redeploying {versions[1]}"
    )
    assert pipeline.name.startswith("rollback ")
    assert len(world.gitlab.requests("POST", r"/trigger/pipeline$")) == 1
    # the same rejection delivered again starts nothing new
    again = trigger(rejection(world, versions[3]), deploy_id, prod_stack=PROD_STACK)
    assert again["status"] == "already started"


def test_rejecting_a_version_that_is_not_live_changes_nothing(
    world: World, trigger: Any, deploy_id: str, versions: list[str]
) -> None:
    before = len(world.gitlab.requests())
    result = trigger(rejection(world, versions[1]), deploy_id, prod_stack=PROD_STACK)
    assert result["status"] == "ignored" and "not live in production" in result["reason"]
    assert len(world.gitlab.requests()) == before


def test_without_a_production_stack_a_rejection_changes_nothing(
    world: World, trigger: Any, deploy_id: str
) -> None:
    result = trigger(load_event("model_package_rejected"), deploy_id, prod_stack=PROD_STACK)
    assert result == {
        "status": "ignored",
        "reason": "rejected package is not live in production (live: nothing)",
        "model_package_arn": load_event("model_package_rejected")["detail"]["ModelPackageArn"],
    }
