"""Project delete and the deploy stacks: delete and wait, retain and list, and every way it can fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from mlops_common.errors import ConfigError
from seedcode_checkin import deploy_stacks
from seedcode_checkin.deploy_stacks import DeployStacksNotDeleted

from tests.unit.lambdas.helpers import load_event

NAME, PID = "abalone", "p-abc123def456"
STAGING, PROD = f"{NAME}-{PID}-deploy-staging", f"{NAME}-{PID}-deploy-prod"
PROJECT_STACK = load_event("cfn_delete")["StackId"]


def arn(name: str) -> str:
    return f"arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/0b9a2f40-0000-11ef-8000-000000000000"


def stacks(name: str, status: str, reason: str = "", endpoint: bool = True) -> dict[str, Any]:
    stage = name.rsplit("-", 1)[-1]
    outputs = [{"OutputKey": "ModelName", "OutputValue": f"gitlab-mlops-{PID}-{stage}-abc"}]
    if endpoint:
        outputs.append({"OutputKey": "EndpointName", "OutputValue": f"{NAME}-{PID}-{stage}"})
    stack = {
        "StackName": name,
        "StackId": arn(name),
        "StackStatus": status,
        "CreationTime": "2026-12-01T00:00:00Z",
        "Outputs": outputs,
    }
    if reason:
        stack["StackStatusReason"] = reason
    return {"Stacks": [stack]}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def cfn() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def missing(stubber: Stubber, name: str) -> None:
    stubber.add_client_error(
        "describe_stacks",
        "ValidationError",
        f"Stack with id {name} does not exist",
        400,
        expected_params={"StackName": name},
    )


def found(stubber: Stubber, name: str, status: str, key: str | None = None, **kw: Any) -> None:
    stubber.add_response("describe_stacks", stacks(name, status, **kw), {"StackName": key or name})


def run(client: Any, policy: str = "delete", deadline: float = 300.0) -> deploy_stacks.Result:
    clock = Clock()
    return deploy_stacks.apply(
        client, NAME, PID, policy, deadline, clock=clock, sleep=clock.sleep, poll_seconds=10
    )


def test_no_deploy_stack_is_fine(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    missing(stubber, STAGING)
    missing(stubber, PROD)
    result = run(client)
    assert result.deleted == () and result.summary() == "no deploy stacks to delete"


def test_delete_waits_until_each_stack_is_gone_and_lists_them(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    found(stubber, STAGING, "UPDATE_COMPLETE")
    found(stubber, PROD, "CREATE_COMPLETE")
    stubber.add_response("delete_stack", {}, {"StackName": arn(STAGING)})
    stubber.add_response("delete_stack", {}, {"StackName": arn(PROD)})
    found(stubber, STAGING, "DELETE_IN_PROGRESS", arn(STAGING))
    found(stubber, PROD, "DELETE_COMPLETE", arn(PROD))
    found(stubber, STAGING, "DELETE_COMPLETE", arn(STAGING))
    result = run(client)
    assert result.deleted == (PROD, STAGING)
    assert result.summary() == f"deploy stacks deleted: {PROD}, {STAGING}"


def test_a_stack_already_deleting_is_waited_for_not_deleted_again(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    found(stubber, STAGING, "DELETE_IN_PROGRESS")
    missing(stubber, PROD)
    found(stubber, STAGING, "DELETE_COMPLETE", arn(STAGING))
    assert run(client).deleted == (STAGING,)


def test_delete_failed_names_the_resource_and_its_reason(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    missing(stubber, STAGING)
    found(stubber, PROD, "CREATE_COMPLETE")
    stubber.add_response("delete_stack", {}, {"StackName": arn(PROD)})
    found(stubber, PROD, "DELETE_FAILED", arn(PROD), reason="The following resource(s) failed to delete")
    event = {
        "StackId": arn(PROD),
        "EventId": "e1",
        "StackName": PROD,
        "LogicalResourceId": "Endpoint",
        "PhysicalResourceId": f"{NAME}-{PID}-prod",
        "ResourceType": "AWS::SageMaker::Endpoint",
        "ResourceStatus": "DELETE_FAILED",
        "ResourceStatusReason": "User is not authorized to perform: sagemaker:DeleteEndpoint",
        "Timestamp": "2026-12-01T00:00:00Z",
    }
    stubber.add_response("describe_stack_events", {"StackEvents": [event]}, {"StackName": arn(PROD)})
    with pytest.raises(DeployStacksNotDeleted) as failure:
        run(client)
    message = str(failure.value)
    assert f"deploy stack {PROD} failed to delete: Endpoint (AWS::SageMaker::Endpoint)" in message
    assert "sagemaker:DeleteEndpoint" in message
    assert message.endswith("then delete the project again")


def test_a_stack_still_deleting_at_the_deadline_fails_so_the_user_retries(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    found(stubber, STAGING, "CREATE_COMPLETE")
    missing(stubber, PROD)
    stubber.add_response("delete_stack", {}, {"StackName": arn(STAGING)})
    for _ in range(3):  # at 0, 10 and 20 s; the next poll would pass the deadline of 25 s
        found(stubber, STAGING, "DELETE_IN_PROGRESS", arn(STAGING))
    with pytest.raises(DeployStacksNotDeleted) as failure:
        run(client, deadline=25)
    assert f"still deleting at the deadline: {STAGING} (" in str(failure.value)
    assert f"EndpointName={NAME}-{PID}-staging" in str(failure.value)
    assert str(failure.value).endswith("delete the project again once they are gone")


def test_a_stack_the_ci_is_updating_fails_with_what_to_wait_for(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    found(stubber, STAGING, "UPDATE_IN_PROGRESS")
    missing(stubber, PROD)
    stubber.add_client_error("delete_stack", "ValidationError", "cannot delete", 400)
    with pytest.raises(DeployStacksNotDeleted, match=f"{STAGING} is UPDATE_IN_PROGRESS.*CI job to finish"):
        run(client)


def test_retain_deletes_nothing_and_lists_every_stack_and_endpoint(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    found(stubber, STAGING, "UPDATE_COMPLETE")
    found(stubber, PROD, "CREATE_COMPLETE", endpoint=False)  # batch mode: a model only
    result = run(client, policy="retain")
    assert result.summary() == (
        f"deploy stacks retained, still billing: {STAGING} ({NAME}-{PID}-staging); {PROD} (no endpoint)"
    )
    details = result.details()
    model = f"gitlab-mlops-{PID}-staging-abc"
    assert f"{STAGING} (EndpointName={NAME}-{PID}-staging, ModelName={model})" in details
    assert f"{PROD} (ModelName=gitlab-mlops-{PID}-prod-abc)" in details
    assert details.endswith("when no longer needed")


def test_a_denied_describe_is_an_actionable_error(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    stubber.add_client_error("describe_stacks", "AccessDenied", "no", 403)
    with pytest.raises(Exception, match="AccessDenied.*cloudformation:DescribeStacks permission"):
        run(client)


def test_the_policy_is_a_choice_and_delete_by_default() -> None:
    assert deploy_stacks.policy_from_properties({}) == "delete"
    assert deploy_stacks.policy_from_properties({"DeployStackDeletionPolicy": "retain"}) == "retain"
    with pytest.raises(ConfigError):
        deploy_stacks.policy_from_properties({"DeployStackDeletionPolicy": "archive"})


def test_on_delete_keeps_the_stacks_when_an_update_replaced_the_resource(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "SC-123456789012-pp-abcdefg",
                    "StackId": PROJECT_STACK,
                    "StackStatus": "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
                    "CreationTime": "2026-12-01T00:00:00Z",
                }
            ]
        },
        {"StackName": PROJECT_STACK},
    )
    summary = deploy_stacks.on_delete(client, load_event("cfn_delete"), 300)
    assert summary == "resource replaced: deploy stacks kept"


def test_on_delete_of_the_project_applies_the_policy(cfn: tuple[Any, Stubber]) -> None:
    client, stubber = cfn
    found(stubber, "SC-123456789012-pp-abcdefg", "DELETE_IN_PROGRESS", PROJECT_STACK)
    found(stubber, STAGING, "CREATE_COMPLETE")
    missing(stubber, PROD)
    event = load_event("cfn_delete")
    event["ResourceProperties"]["DeployStackDeletionPolicy"] = "retain"
    assert deploy_stacks.on_delete(client, event, 300).startswith("deploy stacks retained, still billing")
