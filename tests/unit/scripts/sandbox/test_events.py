"""EventBridge pattern matching and the SageMaker event shape."""

from __future__ import annotations

import datetime as dt

import pytest

from scripts.sandbox.events import matches, model_package_event
from scripts.sandbox.exceptions import EventPatternError

EVENT = {
    "source": "aws.sagemaker",
    "detail-type": "SageMaker Model Package State Change",
    "resources": ["arn:aws:sagemaker:us-east-1:1:model-package/g/1"],
    "detail": {
        "ModelPackageGroupName": "proj-p1", "ModelApprovalStatus": "Approved", "ModelPackageVersion": 3,
    },
}
APPROVED_IN_GROUP = {
    "source": ["aws.sagemaker"],
    "detail-type": ["SageMaker Model Package State Change"],
    "detail": {"ModelPackageGroupName": ["proj-p1"], "ModelApprovalStatus": ["Approved"]},
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (APPROVED_IN_GROUP, True),
        ({**APPROVED_IN_GROUP, "detail": {"ModelPackageGroupName": ["other"]}}, False),
        ({"detail": {"ModelApprovalStatus": ["Rejected", "Approved"]}}, True),
        ({"detail": {"ModelPackageGroupName": [{"prefix": "proj-"}]}}, True),
        ({"detail": {"ModelPackageGroupName": [{"prefix": "x-"}]}}, False),
        ({"detail": {"ModelPackageGroupName": [{"suffix": {"equals-ignore-case": "-P1"}}]}}, True),
        ({"detail": {"ModelApprovalStatus": [{"anything-but": "PendingManualApproval"}]}}, True),
        ({"detail": {"ModelApprovalStatus": [{"anything-but": ["Approved", "Rejected"]}]}}, False),
        ({"detail": {"ModelApprovalStatus": [{"anything-but": {"prefix": "Appr"}}]}}, False),
        ({"detail": {"ApprovalDescription": [{"exists": False}]}}, True),
        ({"detail": {"ApprovalDescription": [{"exists": True}]}}, False),
        ({"detail": {"ModelPackageVersion": [{"numeric": [">", 2, "<=", 3]}]}}, True),
        ({"detail": {"ModelPackageVersion": [{"numeric": [">", 3]}]}}, False),
        ({"resources": [{"wildcard": "arn:aws:sagemaker:*:model-package/g/*"}]}, True),
        ({"$or": [{"source": ["aws.s3"]}, {"detail": {"ModelApprovalStatus": ["Approved"]}}]}, True),
        ({"detail": {"ModelApprovalStatus": {"nested": ["x"]}}}, False),  # a string is not an object
    ],
)
def test_pattern_matching(pattern: dict[str, object], expected: bool) -> None:
    assert matches(pattern, EVENT) is expected


def test_unknown_operator_is_an_error_not_a_silent_miss() -> None:
    with pytest.raises(EventPatternError, match="regex"):
        matches({"source": [{"regex": "aws.*"}]}, EVENT)
    with pytest.raises(EventPatternError, match="regex"):
        matches({"detail": {"ModelApprovalStatus": [{"anything-but": {"regex": "x"}}]}}, EVENT)


def test_a_pattern_put_rule_would_refuse_is_an_error() -> None:
    with pytest.raises(EventPatternError, match="Empty arrays"):
        matches({"source": []}, EVENT)


def test_model_package_event_carries_the_package_description() -> None:
    created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    description = {
        "ModelPackageGroupName": "proj-p1", "ModelPackageVersion": 2, "ModelApprovalStatus": "Approved",
        "ModelPackageArn": "arn:aws:sagemaker:eu-west-1:111:model-package/proj-p1/2",
        "ModelPackageStatus": "Completed", "CreationTime": created, "ResponseMetadata": {},
    }

    event = model_package_event(description, account="111", region="eu-west-1", now=created)

    assert matches(APPROVED_IN_GROUP, event)
    assert event["resources"] == [description["ModelPackageArn"]]
    assert (event["account"], event["region"], event["time"]) == ("111", "eu-west-1", "2026-01-02T03:04:05Z")
    assert event["detail"]["CreationTime"] == int(created.timestamp() * 1000)
    assert "ResponseMetadata" not in event["detail"]
