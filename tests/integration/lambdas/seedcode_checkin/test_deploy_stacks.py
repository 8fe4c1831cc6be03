"""Project delete through the handler, with deploy stacks moto created from the model-deploy template."""

from __future__ import annotations

from typing import Any

import pytest
from mlops_common import contract

from scripts.seed_packages import MODEL_DEPLOY_SEED
from tests.integration.lambdas.conftest import World

NAME, PID = "abalone", "p-abc123def456"
DEPLOY_TEMPLATE = MODEL_DEPLOY_SEED / "endpoint-config-template.yml"
ACCOUNT, REGION = "123456789012", "us-east-1"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops/gitlab-mlops-{PID}-sagemaker-execution"


def deploy_stack(world: World, stage: str, hosting: str = "realtime") -> str:
    """What the model-deploy CI creates for one stage (autoscaling off: moto lacks parts of it)."""
    parameters = {
        "SageMakerProjectName": NAME,
        "SageMakerProjectId": PID,
        "ResourceSuffix": "0123456789",
        "StageName": stage,
        "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{NAME}-{PID}/1",
        "ModelExecutionRoleArn": EXECUTION_ROLE,
        "ArtifactBucket": f"gitlab-mlops-{PID}-{ACCOUNT}-{REGION}",
        "HostingMode": hosting,
        "EnableAutoScaling": "false",
        "EnableDataCapture": "false",
    }
    name = contract.deploy_stack_name(NAME, PID, stage)
    world.aws_client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=DEPLOY_TEMPLATE.read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    return name


def live(world: World) -> set[str]:
    cfn = world.aws_client("cloudformation")
    stacks = cfn.list_stacks(StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_FAILED"])
    return {s["StackName"] for s in stacks["StackSummaries"]}


def endpoints(world: World) -> set[str]:
    return {e["EndpointName"] for e in world.aws_client("sagemaker").list_endpoints()["Endpoints"]}


def test_project_delete_removes_both_deploy_stacks_and_their_endpoints(world: World, checkin: Any) -> None:
    checkin(world.event("cfn_create"))
    staging, prod = deploy_stack(world, "staging"), deploy_stack(world, "prod")
    assert {staging, prod} <= live(world) and len(endpoints(world)) == 2
    answer = checkin(world.event("cfn_delete", DeletionPolicy="delete"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["Reason"] == f"deploy stacks deleted: {staging}, {prod}"
    assert not {staging, prod} & live(world) and not endpoints(world)
    assert not list(world.gl.projects.list(get_all=True))  # then the repositories' policy
    again = checkin(world.event("cfn_delete", DeletionPolicy="delete"))
    assert again["Status"] == "SUCCESS", again["Reason"]  # CloudFormation may repeat a Delete


def test_retain_keeps_the_stacks_and_lists_what_still_bills(
    world: World, checkin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    checkin(world.event("cfn_create"))
    prod = deploy_stack(world, "prod")
    answer = checkin(world.event("cfn_delete", DeployStackDeletionPolicy="retain"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    outputs = world.aws_client("cloudformation").describe_stacks(StackName=prod)["Stacks"][0]["Outputs"]
    endpoint = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "EndpointName")  # moto's name
    assert prod in live(world) and endpoint in endpoints(world)
    assert answer["Reason"].startswith(f"deploy stacks retained, still billing: {prod} ({endpoint})")
    assert f"{prod} (EndpointName={endpoint}, ModelName=" in caplog.text  # the full list in the log


def test_a_batch_stage_is_deleted_too(world: World, checkin: Any) -> None:
    staging = deploy_stack(world, "staging", hosting="batch")
    answer = checkin(world.event("cfn_delete"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert staging not in live(world)
    assert not world.aws_client("sagemaker").list_models()["Models"]
