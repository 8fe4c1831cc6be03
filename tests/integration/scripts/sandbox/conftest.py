"""Helpers for the sandbox integration tests: zips built in the test, deployed as moto Lambda functions."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts.sandbox.lambda_runner import LambdaRunner, moto_environment

REGION = "us-east-1"
CODE_BUCKET = "sandbox-test-bundle"


def make_zip(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture
def sandbox_aws(aws: str) -> str:
    """moto with Lambda's docker backend selected (nothing runs in it: the sandbox runs the code).

    With `use_docker: false` moto keeps functions created by CloudFormation in a different store from
    the Lambda API's, so `get_function` cannot see a stack's functions; the sandbox needs both views.
    """
    requests.post(f"{aws}/moto-api/config", json={"lambda": {"use_docker": True}}, timeout=10)
    return aws


@pytest.fixture
def role_arn(aws_client: Callable[[str], Any], sandbox_aws: str) -> str:
    iam = aws_client("iam")
    return str(iam.create_role(RoleName="sandbox-test", AssumeRolePolicyDocument="{}")["Role"]["Arn"])


@pytest.fixture
def deploy(aws_client: Callable[[str], Any], role_arn: str) -> Callable[..., str]:
    """Upload a zip of `files` to S3 and create a Lambda function from it; returns the function ARN."""
    s3, lam = aws_client("s3"), aws_client("lambda")
    s3.create_bucket(Bucket=CODE_BUCKET)

    def _deploy(
        name: str, files: Mapping[str, str], handler: str = "app.handler",
        env: Mapping[str, str] | None = None, timeout: int = 10,
    ) -> str:
        key = f"bundle/{name}.zip"
        s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=make_zip(files))
        response = lam.create_function(
            FunctionName=name, Runtime="python3.13", Role=role_arn, Handler=handler, Timeout=timeout,
            Code={"S3Bucket": CODE_BUCKET, "S3Key": key},
            Environment={"Variables": dict(env or {})},
        )
        return str(response["FunctionArn"])

    return _deploy


@pytest.fixture
def runner(aws_client: Callable[[str], Any], sandbox_aws: str, tmp_path: Path) -> LambdaRunner:
    return LambdaRunner(
        lambda_client=aws_client("lambda"), s3_client=aws_client("s3"), work_dir=tmp_path / "lambda",
        aws_env=moto_environment(sandbox_aws, REGION), code_buckets=(CODE_BUCKET,),
    )
