"""The SageMaker path of run-pipeline, against botocore's Stubber (requests checked against the API model)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipelines import remote, run_pipeline

PIPELINE = "demo-model-build"
ARN = f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/{PIPELINE}"
EXECUTION = f"{ARN}/execution/abc123"
ROLE = "arn:aws:iam::123456789012:role/sm"
TAGS = [{"Key": "sagemaker:project-name", "Value": "demo"}]


@pytest.fixture
def sagemaker():
    client = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def not_found(stubber: Stubber) -> None:
    stubber.add_client_error(
        "describe_pipeline", "ResourceNotFound", "Pipeline does not exist", 400, {"PipelineName": PIPELINE}
    )


def test_a_new_pipeline_is_created_when_describe_says_it_does_not_exist(sagemaker):
    client, stubber = sagemaker
    not_found(stubber)
    stubber.add_response(
        "create_pipeline",
        {"PipelineArn": ARN},
        {
            "PipelineName": PIPELINE,
            "PipelineDefinition": "{}",
            "PipelineDescription": "d",
            "RoleArn": ROLE,
            "Tags": TAGS,
        },
    )
    assert remote.upsert_pipeline(client, PIPELINE, "{}", ROLE, TAGS, "d") == ARN


def test_an_existing_pipeline_is_updated_and_tagged(sagemaker):
    client, stubber = sagemaker
    stubber.add_response(
        "describe_pipeline", {"PipelineArn": ARN, "PipelineName": PIPELINE}, {"PipelineName": PIPELINE}
    )
    stubber.add_response(
        "update_pipeline",
        {"PipelineArn": ARN},
        {"PipelineName": PIPELINE, "PipelineDefinition": "{}", "PipelineDescription": "d", "RoleArn": ROLE},
    )
    stubber.add_response("add_tags", {}, {"ResourceArn": ARN, "Tags": TAGS})
    assert remote.upsert_pipeline(client, PIPELINE, "{}", ROLE, TAGS, "d") == ARN


def test_a_definition_error_on_the_first_run_is_reported_as_such_not_as_a_missing_pipeline(sagemaker):
    client, stubber = sagemaker
    not_found(stubber)
    stubber.add_client_error(
        "create_pipeline", "ValidationException", "Step TrainAbaloneModel: invalid InstanceType", 400
    )
    with pytest.raises(
        remote.RemoteRunError, match="ValidationException: Step TrainAbaloneModel: invalid InstanceType"
    ):
        remote.upsert_pipeline(client, PIPELINE, "{}", ROLE, TAGS, "d")


def test_access_denied_on_describe_is_not_taken_for_absence(sagemaker):
    client, stubber = sagemaker
    stubber.add_client_error("describe_pipeline", "AccessDeniedException", "not allowed", 400)
    with pytest.raises(remote.RemoteRunError, match="AccessDeniedException"):
        remote.upsert_pipeline(client, PIPELINE, "{}", ROLE, TAGS, "d")


def execution_status(stubber: Stubber, status: str, steps: list[dict] | None = None, reason: str = "") -> None:
    response = {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": status}
    if reason:
        response["FailureReason"] = reason
    stubber.add_response("describe_pipeline_execution", response, {"PipelineExecutionArn": EXECUTION})
    stubber.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": steps or []},
        {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending"},
    )


def test_follow_prints_each_step_change_until_the_execution_succeeds(sagemaker):
    client, stubber = sagemaker
    execution_status(stubber, "Executing", [{"StepName": "Train", "StepStatus": "Executing"}])
    execution_status(stubber, "Executing", [{"StepName": "Train", "StepStatus": "Executing"}])
    execution_status(stubber, "Succeeded", [{"StepName": "Train", "StepStatus": "Succeeded"}])
    seen: list[tuple[str, str]] = []
    status, reason = remote.follow_execution(
        client, EXECUTION, lambda n, s, d: seen.append((n, s)), sleep=lambda _: None
    )
    assert (status, reason) == ("Succeeded", "")
    assert seen == [("Train", "Executing"), ("Train", "Succeeded")]


def test_follow_stops_the_execution_after_the_overall_timeout(sagemaker):
    client, stubber = sagemaker
    now = iter([0.0, 10.0, 700.0])
    execution_status(stubber, "Executing")
    execution_status(stubber, "Executing")
    stubber.add_response(
        "stop_pipeline_execution", {"PipelineExecutionArn": EXECUTION}, {"PipelineExecutionArn": EXECUTION}
    )
    status, reason = remote.follow_execution(
        client, EXECUTION, lambda *a: None, sleep=lambda _: None, timeout_seconds=600, clock=lambda: next(now)
    )
    assert status == "TimedOut"
    assert "did not finish within 600 s; stop requested" in reason


def test_a_cancelled_ci_job_stops_the_execution_it_started(sagemaker):
    client, stubber = sagemaker
    execution_status(stubber, "Executing")
    stubber.add_response(
        "stop_pipeline_execution", {"PipelineExecutionArn": EXECUTION}, {"PipelineExecutionArn": EXECUTION}
    )

    def cancelled(_: float) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # what GitLab Runner sends a cancelled job

    before = signal.getsignal(signal.SIGTERM)
    status, reason = remote.follow_execution(client, EXECUTION, lambda *a: None, sleep=cancelled)
    assert status == "Interrupted"
    assert "received SIGTERM" in reason and "stop requested" in reason
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_failed_execution_reports_its_failed_steps(sagemaker):
    client, stubber = sagemaker
    failed = [{"StepName": "Evaluate", "StepStatus": "Failed", "FailureReason": "ClientError: boom"}]
    execution_status(stubber, "Failed", failed)
    stubber.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": failed},
        {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending"},
    )
    assert remote.follow_execution(client, EXECUTION, lambda *a: None, sleep=lambda _: None) == (
        "Failed",
        "step Evaluate: ClientError: boom",
    )


def test_run_remote_keeps_the_definition_and_the_execution_arn_as_artifacts(sagemaker, tmp_path: Path):
    client, stubber = sagemaker
    not_found(stubber)
    stubber.add_response(
        "create_pipeline",
        {"PipelineArn": ARN},
        {
            "PipelineName": PIPELINE,
            "PipelineDefinition": '{"Steps": []}',
            "PipelineDescription": ANY,
            "RoleArn": ROLE,
            "Tags": [],
        },
    )
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION},
        {"PipelineName": PIPELINE, "PipelineParameters": []},
    )
    execution_status(stubber, "Succeeded")
    config = run_pipeline.RunConfig(
        region="us-east-1", role_arn=ROLE, artifact_bucket="b", model_package_group_name="g", pipeline_name=PIPELINE
    )
    stubber.add_response(  # registered_arn: the steps of the succeeded execution (none registered here)
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": []},
        {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending"},
    )
    report = run_pipeline.run_remote(config, '{"Steps": []}', [], 0.0, tmp_path, clients=(None, client))
    assert report.status == "Succeeded" and report.registered_arn == ""
    assert json.loads((tmp_path / run_pipeline.DEFINITION_FILE).read_text()) == {"Steps": []}
    record = json.loads((tmp_path / run_pipeline.EXECUTION_FILE).read_text())
    assert record["execution_arn"] == EXECUTION and record["status"] == "Succeeded"
