"""The local SageMaker runtime serves real predictions from the endpoint's model artifact in moto."""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import numpy as np
import pytest
import xgboost
from botocore.exceptions import ClientError

from scripts.sandbox.inference import InferenceServer

from .conftest import REGION

BUCKET = "sandbox-artifacts"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"


def train(seed: int) -> tuple[xgboost.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(200, 8)).astype(np.float32)
    rings = features @ rng.normal(size=8) + 10
    booster = xgboost.train({"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror"},
                            xgboost.DMatrix(features, label=rings), num_boost_round=15)
    return booster, features[:25]


def artifact(model_bytes: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(model_bytes)
        tar.addfile(info, io.BytesIO(model_bytes))
    return buffer.getvalue()


@pytest.fixture
def server(aws_client: Callable[[str], Any], sandbox_aws: str) -> Iterator[InferenceServer]:
    aws_client("s3").create_bucket(Bucket=BUCKET)
    aws_client("sagemaker").create_model_package_group(ModelPackageGroupName="proj-p1")
    running = InferenceServer(aws_client("sagemaker"), aws_client("s3"), account="123456789012").start()
    yield running
    running.stop()


@pytest.fixture
def runtime(server: InferenceServer) -> Any:
    return boto3.client("sagemaker-runtime", region_name=REGION, endpoint_url=server.url)


def deploy(
    aws_client: Callable[[str], Any], name: str, model_bytes: bytes, *, via_package: bool = True
) -> None:
    """Artifact in S3, (model package,) model, endpoint config; then the endpoint points at them."""
    s3, sm = aws_client("s3"), aws_client("sagemaker")
    url = f"s3://{BUCKET}/{name}/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=artifact(model_bytes))
    if via_package:
        package = sm.create_model_package(
            ModelPackageGroupName="proj-p1", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": url}],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]},
        )["ModelPackageArn"]
        container = {"ModelPackageName": package}
    else:
        container = {"Image": IMAGE, "ModelDataUrl": url}
    sm.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])


def point_endpoint(aws_client: Callable[[str], Any], endpoint: str, config: str) -> None:
    sm = aws_client("sagemaker")
    if any(e["EndpointName"] == endpoint for e in sm.list_endpoints()["Endpoints"]):
        sm.delete_endpoint(EndpointName=endpoint)  # moto lacks update_endpoint
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)


def to_csv(rows: np.ndarray) -> str:
    return "\n".join(",".join(repr(float(x)) for x in row) for row in rows)


def predict(runtime: Any, endpoint: str, rows: np.ndarray) -> np.ndarray:
    response = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body=to_csv(rows))
    assert response["ContentType"] == "text/csv"
    return np.array([float(v) for v in response["Body"].read().decode().split()])


def test_predictions_match_the_trained_booster(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    booster, rows = train(1)
    deploy(aws_client, "m1", bytes(booster.save_raw("ubj")))
    point_endpoint(aws_client, "proj-staging", "m1")

    predictions = predict(runtime, "proj-staging", rows)

    assert np.allclose(predictions, booster.predict(xgboost.DMatrix(rows)), atol=1e-5)


def test_a_pickled_model_named_by_the_model_itself_also_loads(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    booster, rows = train(2)
    deploy(aws_client, "m-pickle", pickle.dumps(booster), via_package=False)
    point_endpoint(aws_client, "proj-prod", "m-pickle")

    assert np.allclose(predict(runtime, "proj-prod", rows), booster.predict(xgboost.DMatrix(rows)), atol=1e-5)


def test_a_new_endpoint_config_serves_the_new_model(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    first, rows = train(3)
    second, _ = train(4)
    deploy(aws_client, "first", bytes(first.save_raw("ubj")))
    deploy(aws_client, "second", bytes(second.save_raw("json")))
    point_endpoint(aws_client, "proj-staging", "first")
    before = predict(runtime, "proj-staging", rows)

    point_endpoint(aws_client, "proj-staging", "second")
    after = predict(runtime, "proj-staging", rows)

    assert np.allclose(before, first.predict(xgboost.DMatrix(rows)), atol=1e-5)
    assert np.allclose(after, second.predict(xgboost.DMatrix(rows)), atol=1e-5)
    assert not np.allclose(before, after)


def test_an_unknown_endpoint_fails_like_sagemaker(runtime: Any) -> None:
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="nope", ContentType="text/csv", Body="1,2")

    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"] == "Endpoint nope of account 123456789012 not found."


def test_rows_the_model_cannot_take_are_a_model_error(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    booster, _ = train(5)
    deploy(aws_client, "m5", bytes(booster.save_raw("ubj")))
    point_endpoint(aws_client, "proj-staging", "m5")

    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="proj-staging", ContentType="text/csv", Body="1,2,oops")

    assert caught.value.response["Error"]["Code"] == "ModelError"
    assert "csv" in caught.value.response["Error"]["Message"]

