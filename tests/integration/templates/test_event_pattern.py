"""The approval rule's EXACT pattern from project.yml, on moto's EventBridge, against real-shaped events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.templates.cfn import Evaluator, load, parameter_values

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "events"
PROJECT = {"SageMakerProjectName": "abalone", "SageMakerProjectId": "p-abc123def456"}


def rule_pattern() -> dict[str, Any]:
    template = load("project.yml")
    ev = Evaluator(template, parameter_values(template, **PROJECT))
    pattern: dict[str, Any] = ev.properties("ModelApprovedRule")["EventPattern"]
    return pattern


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


@pytest.fixture
def delivered(aws_client):  # type: ignore[no-untyped-def]
    """Create the rule with an SQS target; returns send(event) -> the events the queue received."""
    events, sqs = aws_client("events"), aws_client("sqs")
    queue_url = sqs.create_queue(QueueName="approved")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="approved", EventPattern=json.dumps(rule_pattern()), State="ENABLED")
    events.put_targets(Rule="approved", Targets=[{"Id": "queue", "Arn": queue_arn}])

    def send(body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = events.put_events(
            Entries=[
                {
                    "Source": body["source"],
                    "DetailType": body["detail-type"],
                    "Detail": json.dumps(body["detail"]),
                    "Resources": body.get("resources", []),
                }
            ]
        )
        assert answer["FailedEntryCount"] == 0
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]

    return send


def test_the_fixture_events_belong_to_the_project_the_rule_is_rendered_for() -> None:
    assert event("model_package_approved")["detail"]["ModelPackageGroupName"] == "abalone-p-abc123def456"


def test_approval_in_this_projects_group_is_delivered_with_its_detail(delivered) -> None:  # type: ignore[no-untyped-def]
    approved = event("model_package_approved")
    received = delivered(approved)
    assert len(received) == 1
    assert received[0]["detail"]["ModelPackageArn"] == approved["detail"]["ModelPackageArn"]
    assert received[0]["detail-type"] == "SageMaker Model Package State Change"


def test_approval_in_another_group_is_not_delivered(delivered) -> None:  # type: ignore[no-untyped-def]
    other = event("model_package_other_group")
    assert other["detail"]["ModelApprovalStatus"] == "Approved"
    assert delivered(other) == []


def test_a_group_whose_name_only_starts_like_ours_is_not_delivered(delivered) -> None:  # type: ignore[no-untyped-def]
    lookalike = event("model_package_approved")
    lookalike["detail"]["ModelPackageGroupName"] = "abalone-p-abc123def456-copy"
    assert delivered(lookalike) == []


def test_pending_packages_are_not_delivered(delivered) -> None:  # type: ignore[no-untyped-def]
    body = event("model_package_pending")
    assert body["detail"]["ModelPackageGroupName"] == "abalone-p-abc123def456"
    assert body["detail"]["ModelApprovalStatus"] not in ("Approved", "Rejected")
    assert delivered(body) == []


def test_rejections_are_delivered_for_the_rollback(delivered) -> None:  # type: ignore[no-untyped-def]
    body = event("model_package_rejected")
    assert body["detail"]["ModelApprovalStatus"] == "Rejected"
    assert len(delivered(body)) == 1


def test_events_from_another_source_are_not_delivered(delivered) -> None:  # type: ignore[no-untyped-def]
    forged = event("model_package_approved")
    forged["source"] = "custom.sagemaker"
    assert delivered(forged) == []
