"""The local SageMaker runtime serves the endpoint's real artifact with the XGBoost container's rules.

Algorithm mode with plain boosters; script mode with the model-build seed's own entry point and feature
module packaged into model.tar.gz (code/), as the pipeline's package step does.
"""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import tarfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import numpy as np
import pytest
import xgboost
from botocore.exceptions import ClientError

from scripts.sandbox.inference import InferenceServer
from scripts.seed_packages import MODEL_BUILD_SEED

from .conftest import REGION

BUCKET = "sandbox-artifacts"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
SEED_CODE = MODEL_BUILD_SEED / "pipelines" / "abalone"
# As the model-build pipeline registers it (pipelines/abalone/pipeline.py SERVING_ENVIRONMENT).
SCRIPT_MODE = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
}
RAW = (
    "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15\n"
    "F,0.53,0.42,0.135,0.677,0.2565,0.1415,0.21\n"
    "I,0.33,0.255,0.08,0.205,0.0895,0.0395,0.055"
)


def train(seed: int) -> tuple[xgboost.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(200, 8)).astype(np.float32)
    rings = features @ rng.normal(size=8) + 10
    booster = xgboost.train({"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror"},
                            xgboost.DMatrix(features, label=rings), num_boost_round=15)
    return booster, features[:25]


def artifact(model_bytes: bytes, code: Mapping[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = {"xgboost-model": model_bytes, **{f"code/{k}": v for k, v in (code or {}).items()}}
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def seed_features() -> Any:
    spec = importlib.util.spec_from_file_location("seed_features", SEED_CODE / "features.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_code() -> dict[str, bytes]:
    return {name: (SEED_CODE / name).read_bytes() for name in ("inference.py", "features.py")}


def abalone_booster() -> xgboost.Booster:
    features = seed_features()
    rng = np.random.default_rng(7)
    rows = rng.uniform(0.05, 0.8, size=(150, len(features.FEATURE_COLUMNS)))
    labels = rows[:, 6] * 30 + 3
    return xgboost.train({"max_depth": 3, "verbosity": 0}, xgboost.DMatrix(rows, label=labels), 20)


@pytest.fixture
def server(aws_client: Callable[[str], Any], sandbox_aws: str) -> Iterator[InferenceServer]:
    aws_client("s3").create_bucket(Bucket=BUCKET)
    aws_client("sagemaker").create_model_package_group(ModelPackageGroupName="proj-p1")
    running = InferenceServer(
        aws_client("sagemaker"), aws_client("s3"), account="123456789012",
        cfn_client=aws_client("cloudformation"),
    ).start()
    yield running
    running.stop()


@pytest.fixture
def runtime(server: InferenceServer) -> Any:
    return boto3.client("sagemaker-runtime", region_name=REGION, endpoint_url=server.url)


def deploy(
    aws_client: Callable[[str], Any], name: str, model_bytes: bytes, *, via_package: bool = True,
    code: Mapping[str, bytes] | None = None, environment: Mapping[str, str] | None = None,
) -> None:
    """Artifact in S3, (model package,) model, endpoint config; then the endpoint points at them.

    The model comes from a CloudFormation stack with EnableNetworkIsolation: true, as the model-deploy
    template creates it (moto's CreateModel API drops the flag; the runtime reads it from the stack).
    """
    s3, sm = aws_client("s3"), aws_client("sagemaker")
    url = f"s3://{BUCKET}/{name}/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=artifact(model_bytes, code))
    spec: dict[str, Any] = {"Image": IMAGE, "ModelDataUrl": url}
    if environment is not None:
        spec["Environment"] = dict(environment)
    if via_package:
        package = sm.create_model_package(
            ModelPackageGroupName="proj-p1", ModelApprovalStatus="Approved",
            InferenceSpecification={"Containers": [spec],
                                    "SupportedContentTypes": ["text/csv"],
                                    "SupportedResponseMIMETypes": ["text/csv"]},
        )["ModelPackageArn"]
        container: dict[str, Any] = {"ModelPackageName": package}
    else:
        container = spec
    template = {
        "Resources": {
            "Model": {
                "Type": "AWS::SageMaker::Model",
                "Properties": {
                    "ExecutionRoleArn": ROLE, "EnableNetworkIsolation": True, "PrimaryContainer": container,
                },
            }
        },
        "Outputs": {"ModelName": {"Value": {"Fn::GetAtt": ["Model", "ModelName"]}}},
    }
    cfn = aws_client("cloudformation")
    cfn.create_stack(StackName=f"model-{name}", TemplateBody=json.dumps(template))
    outputs = cfn.describe_stacks(StackName=f"model-{name}")["Stacks"][0]["Outputs"]
    model_name = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "ModelName")
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model_name, "InitialInstanceCount": 1,
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


def invoke_error(runtime: Any, body: str, content_type: str = "text/csv") -> ClientError:
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="proj-staging", ContentType=content_type, Body=body)
    return caught.value


def test_algorithm_mode_refuses_text_with_415_and_extra_columns_with_400(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    booster, rows = train(5)
    deploy(aws_client, "m5", bytes(booster.save_raw("ubj")))
    point_endpoint(aws_client, "proj-staging", "m5")

    error = invoke_error(runtime, "1,2,oops")
    assert error.response["Error"]["Code"] == "ModelError"
    assert error.response["OriginalStatusCode"] == 415
    assert "Loading csv data failed" in error.response["Error"]["Message"]
    error = invoke_error(runtime, to_csv(np.hstack([rows[:1], rows[:1]])))  # 16 columns, 8 features
    assert error.response["OriginalStatusCode"] == 400
    assert "Unable to evaluate payload provided" in error.response["Error"]["Message"]


def test_a_pickled_model_checks_the_column_count_as_the_container_does(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    booster, rows = train(6)
    deploy(aws_client, "m6", pickle.dumps(booster))
    point_endpoint(aws_client, "proj-staging", "m6")

    assert len(predict(runtime, "proj-staging", rows[:, :7])) == 25  # one column fewer is allowed
    error = invoke_error(runtime, to_csv(rows[:, :5]))
    assert error.response["OriginalStatusCode"] == 400
    assert "is not consistent with feature size of trained model 8" in error.response["Error"]["Message"]


def test_the_seed_entry_point_serves_raw_records_in_script_mode(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    booster = abalone_booster()
    deploy(aws_client, "raw", bytes(booster.save_raw("ubj")), code=seed_code(), environment=SCRIPT_MODE)
    point_endpoint(aws_client, "proj-staging", "raw")

    response = runtime.invoke_endpoint(EndpointName="proj-staging", ContentType="text/csv", Body=RAW)
    assert response["ContentType"] == "text/csv"
    served = [float(v) for v in response["Body"].read().decode().split()]
    features = seed_features()
    expected = booster.predict(xgboost.DMatrix(features.features_from_csv(RAW).astype(np.float32)))
    np.testing.assert_allclose(served, expected, rtol=1e-6)

    as_json = runtime.invoke_endpoint(
        EndpointName="proj-staging", ContentType="text/csv", Accept="application/json", Body=RAW
    )
    assert as_json["ContentType"] == "application/json"
    scores = [p["score"] for p in json.loads(as_json["Body"].read())["predictions"]]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    # Without SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, script mode answers a request without Accept in JSON.
    bare = {k: v for k, v in SCRIPT_MODE.items() if k != "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"}
    deploy(aws_client, "bare", bytes(booster.save_raw("ubj")), code=seed_code(), environment=bare)
    point_endpoint(aws_client, "proj-staging", "bare")
    no_accept = runtime.invoke_endpoint(EndpointName="proj-staging", ContentType="text/csv", Body=RAW)
    assert no_accept["ContentType"] == "application/json"


MALFORMED = [
    ("0.455,0.365,0.095,0.514,0.2245,0.101,0.15", "text/csv", 400, "expected 8 values"),  # numbers only
    ("M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15", "text/csv", 400, "expected 8 values"),  # with rings
    ("Q,0.455,0.365,0.095,0.514,0.2245,0.101,0.15", "text/csv", 400, "sex 'Q' is not one of"),
    ('{"sex": "M"}', "application/json", 415, "send text/csv records"),
]


def test_a_malformed_request_is_a_client_error_never_a_prediction(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    booster = bytes(abalone_booster().save_raw("ubj"))
    deploy(aws_client, "raw", booster, code=seed_code(), environment=SCRIPT_MODE)
    point_endpoint(aws_client, "proj-staging", "raw")

    for body, content_type, status, message in MALFORMED:
        error = invoke_error(runtime, body, content_type)
        assert error.response["Error"]["Code"] == "ModelError"
        assert error.response["OriginalStatusCode"] == status
        assert f"Received client error ({status})" in error.response["Error"]["Message"]
        assert message in error.response["OriginalMessage"]


def test_an_empty_sagemaker_program_fails_the_health_check_as_in_the_container(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any
) -> None:
    # What SDK v3 ModelBuilder.register writes when it has no entry point: set, but empty.
    empty = {"SAGEMAKER_PROGRAM": "", "SAGEMAKER_SUBMIT_DIRECTORY": ""}
    deploy(aws_client, "empty", bytes(abalone_booster().save_raw("ubj")), code=seed_code(), environment=empty)
    point_endpoint(aws_client, "proj-staging", "empty")

    error = invoke_error(runtime, RAW)
    assert error.response["Error"]["Code"] == "ValidationError"
    message = error.response["Error"]["Message"]
    assert "did not pass the ping health check: ValueError: Empty module name" in message

    # Unset, the same artifact is served in algorithm mode (it then expects the 15 feature columns).
    deploy(aws_client, "unset", bytes(abalone_booster().save_raw("ubj")), code=seed_code(), environment={})
    point_endpoint(aws_client, "proj-staging", "unset")
    assert invoke_error(runtime, RAW).response["OriginalStatusCode"] == 415  # "M" is no number


@pytest.mark.parametrize(
    ("environment", "code", "message"),
    [
        ({**SCRIPT_MODE, "SAGEMAKER_SUBMIT_DIRECTORY": "s3://b/sourcedir.tar.gz"}, {}, "network-isolated"),
        (SCRIPT_MODE, {}, "model.tar.gz has no code/ directory"),
        (SCRIPT_MODE, {"requirements.txt": b"lightgbm\n"}, "requirements.txt needs pip"),
    ],
)
def test_code_a_network_isolated_container_cannot_reach_is_a_failed_health_check(
    aws_client: Callable[[str], Any], server: InferenceServer, runtime: Any,
    environment: dict[str, str], code: dict[str, bytes], message: str,
) -> None:
    files = {**seed_code(), **code} if code else None
    deploy(aws_client, "iso", bytes(abalone_booster().save_raw("ubj")), code=files, environment=environment)
    point_endpoint(aws_client, "proj-staging", "iso")

    error = invoke_error(runtime, RAW)
    assert error.response["Error"]["Code"] == "ValidationError"
    assert message in error.response["Error"]["Message"]

