"""Model package versions take tags in the sandbox's moto, as they do in SageMaker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scripts.sandbox.moto_gaps import allow_cloudwatch_alarms_in_stacks, allow_model_package_tags


def test_model_package_versions_can_be_tagged_listed_and_untagged(aws_client: Callable[[str], Any]) -> None:
    allow_model_package_tags()
    allow_model_package_tags()  # idempotent
    sm = aws_client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="g")
    spec = {"Containers": [{"Image": "123.dkr.ecr.us-east-1.amazonaws.com/x:1"}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}
    first, second = (
        sm.create_model_package(ModelPackageGroupName="g", InferenceSpecification=spec)["ModelPackageArn"]
        for _ in range(2)
    )
    assert first.endswith("model-package/g/1")

    sm.add_tags(ResourceArn=first, Tags=[{"Key": "deployed-to:staging", "Value": "https://gl/p/-/pipelines/1"}])
    sm.add_tags(ResourceArn=second, Tags=[{"Key": "deployed-to:prod", "Value": "https://gl/p/-/pipelines/2"}])
    assert sm.list_tags(ResourceArn=first)["Tags"] == [
        {"Key": "deployed-to:staging", "Value": "https://gl/p/-/pipelines/1"}]
    sm.delete_tags(ResourceArn=first, TagKeys=["deployed-to:staging"])
    assert sm.list_tags(ResourceArn=first)["Tags"] == []
    assert [t["Key"] for t in sm.list_tags(ResourceArn=second)["Tags"]] == ["deployed-to:prod"]

    sm.create_model_package_group(ModelPackageGroupName="tagged", Tags=[{"Key": "k", "Value": "v"}])
    group_arn = sm.describe_model_package_group(ModelPackageGroupName="tagged")["ModelPackageGroupArn"]
    assert sm.list_tags(ResourceArn=group_arn)["Tags"] == [{"Key": "k", "Value": "v"}]  # others unchanged


ALARM_STACK = """
Resources:
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: !Sub ${AWS::StackName}-errors
      Namespace: AWS/Lambda
      MetricName: Errors
      ComparisonOperator: GreaterThanOrEqualToThreshold
      EvaluationPeriods: 1
      Period: 60
      Threshold: 1
      Statistic: Sum
"""


def test_alarms_in_stacks_are_created_and_deleted_with_their_stack(aws_client: Callable[[str], Any]) -> None:
    """Deleting a stack whose alarm name is computed (Fn::Sub) deletes that alarm (it raised in moto)."""
    allow_cloudwatch_alarms_in_stacks()
    cfn, cloudwatch = aws_client("cloudformation"), aws_client("cloudwatch")
    cfn.create_stack(StackName="alarms", TemplateBody=ALARM_STACK)
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]] == ["alarms-errors"]
    cfn.delete_stack(StackName="alarms")
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
