"""`run-pipeline --local` against a moto server with small generated data."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import boto3
import pytest
from support import BUCKET, GROUP, REGION, ROLE, abalone_like

from pipelines import run_pipeline
from pipelines.abalone import inference


@pytest.fixture
def project(aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=GROUP)
    monkeypatch.setenv("SAGEMAKER_EXECUTION_ROLE_ARN", ROLE)
    monkeypatch.setenv("ARTIFACT_BUCKET", BUCKET)
    monkeypatch.setenv("MODEL_PACKAGE_GROUP_NAME", GROUP)
    monkeypatch.setenv("SAGEMAKER_PROJECT_NAME", "demo")
    monkeypatch.setenv("SAGEMAKER_PROJECT_ID", "p-demo")
    data = tmp_path / "abalone.csv"
    abalone_like(400).to_csv(data, header=False, index=False)
    return data


def read_s3(uri: str) -> bytes:
    bucket, _, key = uri[5:].partition("/")
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()


def test_local_run_registers_a_pending_model_with_real_metrics_and_test_data(project, tmp_path, capsys):
    code = run_pipeline.run_pipeline(
        [
            "--local",
            "--input-data",
            str(project),
            "--workdir",
            str(tmp_path / "w"),
            "--artifacts-dir",
            str(tmp_path / "artifacts"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "RegisterAbaloneModel" in out and "Succeeded" in out

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    (summary,) = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]

    report = json.loads(read_s3(package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]))
    assert report["regression_metrics"]["mse"]["value"] < 6.0

    test_rows = read_s3(package["CustomerMetadataProperties"]["TestDataS3Uri"]).decode().strip().splitlines()
    assert len(test_rows) == 60  # 15 % of 400

    assert len(test_rows[0].split(",")) == 9  # rings, then the raw record the endpoint takes

    (container,) = package["InferenceSpecification"]["Containers"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    with tarfile.open(fileobj=io.BytesIO(read_s3(container["ModelDataUrl"]))) as tar:
        assert {"xgboost-model", "code/inference.py", "code/features.py"} <= set(tar.getnames())
        assert tar.extractfile("xgboost-model").read(1) == b"{"  # UBJSON, as the 3.0-5 container saves
        tar.extractall(tmp_path / "model", filter="data")
    model = inference.model_fn(str(tmp_path / "model"))
    raw = "\n".join(row.split(",", 1)[1] for row in test_rows)
    served = inference.predict_fn(inference.input_fn(raw, "text/csv"), model)
    truth = [float(row.split(",", 1)[0]) for row in test_rows]
    mse = sum((p - t) ** 2 for p, t in zip(served, truth, strict=True)) / len(truth)
    assert mse == pytest.approx(report["regression_metrics"]["mse"]["value"], rel=1e-6)
    definition = json.loads((tmp_path / "artifacts" / "pipeline-definition.json").read_text())
    assert [s["Name"] for s in definition["Steps"]][:3] == [
        "PreprocessAbaloneData",
        "TrainAbaloneModel",
        "PackageAbaloneModel",
    ]


def test_a_model_above_the_threshold_hits_the_fail_step_with_the_metric_and_threshold(
    project, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a relative work dir, as in CI
    code = run_pipeline.run_pipeline(
        [
            "--local",
            "--input-data",
            str(project),
            "--workdir",
            "w",
            "--artifacts-dir",
            "artifacts",
            "--parameter",
            "MseThreshold=0.0001",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "FailMSEAboveThreshold" in captured.err and "is above the threshold 0.0001" in captured.err
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"] == []


def test_missing_contract_variable_is_named(aws, capsys):
    assert run_pipeline.run_pipeline(["--local"]) == 2
    assert "SAGEMAKER_EXECUTION_ROLE_ARN is not set" in capsys.readouterr().err


def test_an_instance_type_sagemaker_does_not_offer_fails_the_step_before_it_runs(project, tmp_path, capsys):
    code = run_pipeline.run_pipeline(
        [
            "--local",
            "--input-data",
            str(project),
            "--workdir",
            str(tmp_path / "w"),
            "--artifacts-dir",
            str(tmp_path / "a"),
            "--parameter",
            "TrainingInstanceType=ml.t2.medium",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "TrainAbaloneModel" in err and "'ml.t2.medium' is not an instance type SageMaker accepts for training" in err
