"""Each hosting mode end to end without GitLab: the model-deploy seed's own steps (build, deploy, staging
test) against moto and the sandbox's inference server, with the model-build seed's entry point.

The full lifecycle runs once in the e2e test (real-time); this is the cheaper check of every mode, and of
the stand-ins it needs: async invocations answered through S3, transform jobs run over moto S3.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost

from scripts.sandbox.inference import InferenceServer, serve_transform_jobs, stop_serving_transform_jobs
from scripts.sandbox.lab import shifted_archive
from scripts.sandbox.services import SANDBOX_STAGING_TEST
from scripts.seed_packages import MODEL_DEPLOY_SEED, import_seed_package

from .test_inference import IMAGE, SCRIPT_MODE, abalone_booster, artifact, seed_code, seed_features

import_seed_package(MODEL_DEPLOY_SEED, "steps")

from steps import staging_test  # noqa: E402
from steps.build import build  # noqa: E402
from steps.common import Project  # noqa: E402
from steps.deploy import Waiting, deploy  # noqa: E402

ACCOUNT = "123456789012"
PROJECT = Project(
    name="abalone",
    id="p-modes1",
    region="us-east-1",
    model_package_group="abalone-p-modes1",
    artifact_bucket="sagemaker-project-p-modes1",
    execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
)
ENV = {
    "SAGEMAKER_PROJECT_NAME": PROJECT.name,
    "SAGEMAKER_PROJECT_ID": PROJECT.id,
    "MODEL_PACKAGE_GROUP_NAME": PROJECT.model_package_group,
    "ARTIFACT_BUCKET": PROJECT.artifact_bucket,
    "SAGEMAKER_EXECUTION_ROLE_ARN": PROJECT.execution_role_arn,
    "CI_PIPELINE_ID": "42",
    **SANDBOX_STAGING_TEST,
}
HOSTING = {
    "realtime": {"Mode": "realtime"},
    "serverless": {"Mode": "serverless", "MemorySizeInMB": 2048, "MaxConcurrency": 4},
    "async": {"Mode": "async"},
    "batch": {"Mode": "batch"},
}
MODE_CHECKS = {
    "realtime": {"responses-parse", "latency-p95", "malformed-record-refused"},
    "serverless": {"responses-parse", "latency-p95", "malformed-record-refused"},
    "async": {"responses-parse", "async-queued-completion"},
    "batch": {"transform-row-count", "transform-completed"},
}


def raw_records(count: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        sizes = rng.uniform(0.1, 0.7, size=3)
        weights = rng.uniform(0.05, 1.5, size=4)
        values = ",".join(f"{v:.4f}" for v in (*sizes, *weights))
        records.append(f"{rng.choice(['M', 'F', 'I'])},{values}")
    return records


@pytest.fixture
def sandbox(aws_client: Callable[[str], Any], sandbox_aws: str) -> Iterator[InferenceServer]:
    s3, sm = aws_client("s3"), aws_client("sagemaker")
    s3.create_bucket(Bucket=PROJECT.artifact_bucket)
    sm.create_model_package_group(ModelPackageGroupName=PROJECT.model_package_group)
    server = InferenceServer(sm, s3, account=ACCOUNT, cfn_client=aws_client("cloudformation")).start()
    serve_transform_jobs(server)
    yield server
    stop_serving_transform_jobs(server)
    server.stop()


def register(aws_client: Callable[[str], Any], shift: float = 0.0) -> str:
    """An Approved package: the seed's script-mode artifact, held-out rows and their evaluation."""
    s3, sm = aws_client("s3"), aws_client("sagemaker")
    booster = abalone_booster()
    records = raw_records(60)
    predicted = booster.predict(xgboost.DMatrix(seed_features().features_from_csv("\n".join(records))))
    targets = np.round(predicted + np.random.default_rng(5).normal(0, 0.8, size=len(records)), 3)
    errors = targets - predicted
    evaluation = {
        "regression_metrics": {
            "mse": {"value": float(np.mean(errors**2)), "standard_deviation": float(np.std(errors))}
        }
    }
    archive = artifact(bytes(booster.save_raw("ubj")), seed_code())
    if shift:
        archive = shifted_archive(archive, shift)
    bucket = PROJECT.artifact_bucket
    s3.put_object(Bucket=bucket, Key="v/model.tar.gz", Body=archive)
    s3.put_object(Bucket=bucket, Key="v/evaluation.json", Body=json.dumps(evaluation).encode())
    test_rows = "\n".join(f"{t},{r}" for t, r in zip(targets, records, strict=True))
    s3.put_object(Bucket=bucket, Key="v/test.csv", Body=test_rows.encode())
    return str(
        sm.create_model_package(
            ModelPackageGroupName=PROJECT.model_package_group,
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": IMAGE,
                        "ModelDataUrl": f"s3://{bucket}/v/model.tar.gz",
                        "Environment": SCRIPT_MODE,
                    }
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelMetrics={
                "ModelQuality": {
                    "Statistics": {
                        "ContentType": "application/json",
                        "S3Uri": f"s3://{bucket}/v/evaluation.json",
                    }
                }
            },
            CustomerMetadataProperties={"TestDataS3Uri": f"s3://{bucket}/v/test.csv"},
        )["ModelPackageArn"]
    )


def deploy_and_test(
    aws_client: Callable[[str], Any],
    server: InferenceServer,
    tmp_path: Path,
    mode: str,
    arn: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(MODEL_DEPLOY_SEED / "endpoint-config-template.yml", repo)
    prod = json.loads((MODEL_DEPLOY_SEED / "prod-config.json").read_text())
    (repo / "prod-config.json").write_text(json.dumps(prod))
    parameters = {} if mode in ("serverless", "batch") else {"EnableDataCapture": False}
    (repo / "staging-config.json").write_text(
        json.dumps({"Hosting": HOSTING[mode], "Parameters": parameters})
    )
    build_dir = tmp_path / "build"
    build(aws_client("sagemaker"), PROJECT, arn, repo, build_dir)
    deploy(
        aws_client("cloudformation"),
        aws_client("sagemaker"),
        PROJECT,
        "staging",
        (repo / "endpoint-config-template.yml").read_text(),
        build_dir,
        "deploy-1",
        Waiting(delay_seconds=0, timeout_seconds=60, sleep=lambda _: None),
        lambda _: None,
    )
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
    junit = tmp_path / "report.xml"
    capsys.readouterr()
    code = staging_test.main(["--build-dir", str(build_dir), "--junit", str(junit)])
    return code, capsys.readouterr().out, junit.read_text()


@pytest.mark.parametrize("mode", list(HOSTING))
def test_every_mode_deploys_and_passes_its_own_staging_test(
    aws_client: Callable[[str], Any],
    sandbox: InferenceServer,
    tmp_path: Path,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, report = deploy_and_test(
        aws_client, sandbox, tmp_path, mode, register(aws_client), monkeypatch, capsys
    )
    assert code == 0, out
    for check in MODE_CHECKS[mode] | {"mse-within-bound", "bias-within-bound"}:
        assert f'name="{check}"' in report, (check, out)
    assert "<failure" not in report
    assert f'name="hosting_mode" value="{mode}"' in report
    assert json.loads((tmp_path / "build" / "staging-passed.json").read_text())["model_package_arn"]


@pytest.mark.parametrize("mode", ["async", "batch"])
def test_a_model_one_ring_too_high_fails_the_staging_test_in_every_mode(
    aws_client: Callable[[str], Any],
    sandbox: InferenceServer,
    tmp_path: Path,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = deploy_and_test(
        aws_client, sandbox, tmp_path, mode, register(aws_client, shift=1.0), monkeypatch, capsys
    )
    assert code == 1
    assert "FAIL bias-within-bound: |mean error|" in out and "(predictions above targets)" in out
    assert not (tmp_path / "build" / "staging-passed.json").exists()


def test_a_transform_job_writes_one_output_per_object_line_by_line(
    aws_client: Callable[[str], Any], sandbox: InferenceServer
) -> None:
    s3, sm = aws_client("s3"), aws_client("sagemaker")
    arn = register(aws_client)
    sm.create_model(
        ModelName="gitlab-mlops-p-modes1-prod-m",
        ExecutionRoleArn=PROJECT.execution_role_arn,
        PrimaryContainer={"ModelPackageName": arn},
    )
    bucket = PROJECT.artifact_bucket
    records = raw_records(7)
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=("\n".join(records[:4]) + "\n\n").encode())
    s3.put_object(Bucket=bucket, Key="in/b.csv", Body="\n".join(records[4:]).encode())
    sm.create_transform_job(
        TransformJobName="t1",
        ModelName="gitlab-mlops-p-modes1-prod-m",
        BatchStrategy="MultiRecord",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{bucket}/out/", "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )

    for _ in range(100):
        status = sm.describe_transform_job(TransformJobName="t1")["TransformJobStatus"]
        if status != "InProgress":
            break
        time.sleep(0.1)
    assert status == "Completed"
    outputs = {
        key: s3.get_object(Bucket=bucket, Key=f"out/{key}")["Body"].read().decode()
        for key in ("a.csv.out", "b.csv.out")
    }
    assert [len(v.splitlines()) for v in outputs.values()] == [4, 3]
    assert all(float(line) > 0 for v in outputs.values() for line in v.splitlines())
