"""Approving a model package runs the Lambda target of the matching rule with SageMaker's event."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from scripts.sandbox.events import EventBridge, set_approval
from scripts.sandbox.lambda_runner import LambdaRunner

GROUP = "proj-p1"
RETURN_EVENT = "def handler(event, context):\n    return event\n"


@pytest.fixture
def package_arn(aws_client: Callable[[str], Any], sandbox_aws: str) -> str:
    sm = aws_client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    return str(sm.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "xgboost:3.0-5", "ModelDataUrl": "s3://artifacts/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"])


@pytest.fixture
def bridge(aws_client: Callable[[str], Any], runner: LambdaRunner) -> EventBridge:
    return EventBridge(aws_client("events"), aws_client("lambda"), runner)


def approval_rule(aws_client: Callable[[str], Any], function_arn: str, *, permit: bool = True) -> None:
    events = aws_client("events")
    pattern = {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": [GROUP], "ModelApprovalStatus": ["Approved"]},
    }
    rule_arn = events.put_rule(Name="on-approval", EventPattern=json.dumps(pattern))["RuleArn"]
    events.put_targets(Rule="on-approval", Targets=[{"Id": "trigger", "Arn": function_arn}])
    if permit:
        aws_client("lambda").add_permission(
            FunctionName=function_arn, StatementId="events", Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com", SourceArn=rule_arn,
        )


def test_approval_invokes_the_target_with_the_sagemaker_event(
    aws_client: Callable[[str], Any], deploy: Callable[..., str], bridge: EventBridge, package_arn: str
) -> None:
    approval_rule(aws_client, deploy("trigger", {"app.py": RETURN_EVENT}))

    emission = set_approval(aws_client("sagemaker"), bridge, package_arn, "Approved")

    assert emission.matched_rules == ("on-approval",)
    (delivery,) = emission.deliveries
    assert delivery.ok
    assert delivery.invocation is not None
    received = delivery.invocation.payload
    assert received["detail-type"] == "SageMaker Model Package State Change"
    assert received["resources"] == [package_arn]
    assert received["detail"]["ModelPackageArn"] == package_arn
    assert received["detail"]["ModelApprovalStatus"] == "Approved"
    assert received["detail"]["ModelPackageGroupName"] == GROUP
    status = aws_client("sagemaker").describe_model_package(ModelPackageName=package_arn)
    assert status["ModelApprovalStatus"] == "Approved"


def test_rejection_matches_no_approval_rule(
    aws_client: Callable[[str], Any], deploy: Callable[..., str], bridge: EventBridge, package_arn: str
) -> None:
    approval_rule(aws_client, deploy("trigger", {"app.py": RETURN_EVENT}))

    emission = set_approval(aws_client("sagemaker"), bridge, package_arn, "Rejected")

    assert emission.matched_rules == ()
    assert emission.deliveries == ()
    assert emission.event["detail"]["ModelApprovalStatus"] == "Rejected"


def test_a_target_without_an_invoke_permission_is_not_run(
    aws_client: Callable[[str], Any], deploy: Callable[..., str], bridge: EventBridge, package_arn: str
) -> None:
    approval_rule(aws_client, deploy("trigger", {"app.py": RETURN_EVENT}), permit=False)

    (delivery,) = set_approval(aws_client("sagemaker"), bridge, package_arn, "Approved").deliveries

    assert delivery.invocation is None
    assert "AWS::Lambda::Permission" in str(delivery.not_delivered)


def test_approval_keeps_the_packages_customer_metadata(
    aws_client: Callable[[str], Any], bridge: EventBridge
) -> None:
    sm = aws_client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    arn = sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"TestDataS3Uri": "s3://artifacts/test.csv"},
        InferenceSpecification={
            "Containers": [{"Image": "xgboost:3.0-5", "ModelDataUrl": "s3://artifacts/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]

    emission = set_approval(sm, bridge, arn, "Approved")

    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["CustomerMetadataProperties"] == {"TestDataS3Uri": "s3://artifacts/test.csv"}
    assert emission.event["detail"]["CustomerMetadataProperties"] == {"TestDataS3Uri": "s3://artifacts/test.csv"}
