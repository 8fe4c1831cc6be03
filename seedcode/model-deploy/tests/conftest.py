"""A moto server standing in for AWS, and helpers that register model packages the way model-build does."""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT = "123456789012"
PROJECT_ENV = {
    "SAGEMAKER_PROJECT_NAME": "abalone",
    "SAGEMAKER_PROJECT_ID": "p-abc123xyz",
    "AWS_DEFAULT_REGION": REGION,
    "ARTIFACT_BUCKET": "sagemaker-project-p-abc123xyz",
    "MODEL_PACKAGE_GROUP_NAME": "abalone-p-abc123xyz",
    "SAGEMAKER_EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/service-role/SageMakerExecution",
}
# The moto server logs every request; keep test output readable.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

IMAGE = f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:1.7-1"


def post_json(url: str, payload: Any) -> None:
    request = urllib.request.Request(  # noqa: S310 - local moto server
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def _allow_alarms_in_moto_stacks() -> None:
    """moto 5.2's CloudFormation lacks AWS::CloudWatch::Alarm (it stores None and DescribeStackResources then
    fails); the template's rollback alarms need it. Create them with PutMetricAlarm, as AWS does."""
    from moto.cloudformation import parsing
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.common_models import CloudFormationModel

    if "AWS::CloudWatch::Alarm" in parsing.get_model_map():
        return

    class StackAlarm(CloudFormationModel):  # type: ignore[misc]
        __module__ = "moto.cloudwatch.models"  # moto's model registry files each model under its service

        def __init__(self, name: str) -> None:
            self.name = name

        @staticmethod
        def cloudformation_name_type() -> str:
            return "AlarmName"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudWatch::Alarm"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name, cloudformation_json, account_id, region_name, **_
        ):  # type: ignore[no-untyped-def]
            props = cloudformation_json["Properties"]
            name = str(props.get("AlarmName") or resource_name)
            cloudwatch_backends[account_id][region_name].put_metric_alarm(
                name=name,
                namespace=props.get("Namespace"),
                metric_name=props.get("MetricName"),
                comparison_operator=props["ComparisonOperator"],
                evaluation_periods=int(props["EvaluationPeriods"]),
                period=int(props.get("Period", 60)),
                threshold=float(props["Threshold"]),
                statistic=props.get("Statistic"),
                description=props.get("AlarmDescription", ""),
                dimensions=list(props.get("Dimensions", [])),
                alarm_actions=list(props.get("AlarmActions", [])),
            )
            return cls(name)

        @classmethod
        def update_from_cloudformation_json(
            cls, original, new_name, cloudformation_json, account_id, region_name
        ):  # type: ignore[no-untyped-def]
            cloudwatch_backends[account_id][region_name].delete_alarms([original.name])
            return cls.create_from_cloudformation_json(new_name, cloudformation_json, account_id, region_name)

        @classmethod
        def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):  # type: ignore[no-untyped-def]
            name = cloudformation_json.get("Properties", {}).get("AlarmName") or resource_name
            cloudwatch_backends[account_id][region_name].delete_alarms([name])

        def is_created(self) -> bool:
            return True

        @property
        def physical_resource_id(self) -> str:
            return self.name

    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    _allow_alarms_in_moto_stacks()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fresh moto state; the environment talks only to moto (CI's real AWS variables are removed)."""
    post_json(f"{moto_url}/moto-api/reset", {})
    for key in list(os.environ):
        if key.startswith(("AWS_", "SAGEMAKER_", "MODEL_", "STAGING_TEST_")) or key == "ARTIFACT_BUCKET":
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for key, value in PROJECT_ENV.items():
        monkeypatch.setenv(key, value)
    return moto_url


@pytest.fixture
def client(aws: str) -> Callable[[str], Any]:
    def make(service: str) -> Any:
        return boto3.client(
            service, region_name=REGION, endpoint_url=aws, config=Config(retries={"max_attempts": 1})
        )

    return make


@dataclass
class Registry:
    """Registers model packages with evaluation.json and held-out rows, as the model-build pipeline does."""

    sm: Any
    s3: Any
    bucket: str = PROJECT_ENV["ARTIFACT_BUCKET"]

    def __post_init__(self) -> None:
        self.s3.create_bucket(Bucket=self.bucket)

    def group(self, name: str = PROJECT_ENV["MODEL_PACKAGE_GROUP_NAME"]) -> str:
        self.sm.create_model_package_group(ModelPackageGroupName=name)
        return name

    def package(
        self,
        status: str = "Approved",
        group: str = PROJECT_ENV["MODEL_PACKAGE_GROUP_NAME"],
        mse: float = 4.5,
        test_rows: str = "10,0.5,0.4\n7,0.3,0.2\n",
        with_metrics: bool = True,
        with_test_data: bool = True,
        environment: dict[str, str] | None = None,
    ) -> str:
        count = len(self.sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"])
        prefix = f"{group}/v{count + 1}"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=f"{prefix}/evaluation.json",
            Body=json.dumps({"regression_metrics": {"mse": {"value": mse, "standard_deviation": 1.0}}}),
        )
        self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/test.csv", Body=test_rows)
        kwargs: dict[str, Any] = {}
        if with_metrics:
            kwargs["ModelMetrics"] = {
                "ModelQuality": {
                    "Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": f"s3://{self.bucket}/{prefix}/evaluation.json",
                    }
                }
            }
        if with_test_data:
            kwargs["CustomerMetadataProperties"] = {"TestDataS3Uri": f"s3://{self.bucket}/{prefix}/test.csv"}
        return str(
            self.sm.create_model_package(
                ModelPackageGroupName=group,
                ModelApprovalStatus=status,
                InferenceSpecification={
                    "Containers": [
                        {
                            "Image": IMAGE,
                            "ModelDataUrl": f"s3://{self.bucket}/{prefix}/model.tar.gz",
                            **({"Environment": environment} if environment is not None else {}),
                        }
                    ],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
                **kwargs,
            )["ModelPackageArn"]
        )


@pytest.fixture
def registry(client: Callable[[str], Any]) -> Registry:
    return Registry(sm=client("sagemaker"), s3=client("s3"))


@pytest.fixture
def queue_predictions(aws: str) -> Callable[[list[str]], None]:
    """Make moto's endpoints answer these bodies, in order, to the next distinct requests."""

    def queue(bodies: list[str]) -> None:
        results = [{"Body": body, "ContentType": "text/csv"} for body in bodies]
        post_json(
            f"{aws}/moto-api/static/sagemaker/endpoint-results",
            {"account_id": ACCOUNT, "region": REGION, "results": results},
        )

    return queue
