"""Model package versions take tags in the sandbox's moto, as they do in SageMaker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scripts.sandbox.moto_gaps import allow_model_package_tags


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
