"""`run-pipeline --local` against a moto server with small generated data: registration with provenance,
the quality gate, candidates, and the report files GitLab keeps (these run whole pipelines: marker e2e)."""

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

SHA = "0123456789abcdef0123456789abcdef01234567"
SERVER = "https://gitlab.example.com"
BUILD_URL = f"{SERVER}/ml-team/demo-model-build/-/pipelines/42"


@pytest.fixture
def project(aws: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=GROUP)
    monkeypatch.setenv("SAGEMAKER_EXECUTION_ROLE_ARN", ROLE)
    monkeypatch.setenv("ARTIFACT_BUCKET", BUCKET)
    monkeypatch.setenv("MODEL_PACKAGE_GROUP_NAME", GROUP)
    monkeypatch.setenv("SAGEMAKER_PROJECT_NAME", "demo")
    monkeypatch.setenv("SAGEMAKER_PROJECT_ID", "p-demo")
    for name in ("MR_NOTE_TOKEN", "CI_MERGE_REQUEST_IID"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "abalone.csv"
    abalone_like(400).to_csv(data, header=False, index=False)
    return data


def ci_push_after_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    """GitLab's variables in the default branch's pipeline after merge request !3 was merged."""
    for key, value in {
        "CI": "true", "CI_COMMIT_SHA": SHA, "CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main",
        "CI_PIPELINE_URL": BUILD_URL, "CI_PROJECT_URL": f"{SERVER}/ml-team/demo-model-build",
        "CI_SERVER_URL": SERVER,
        "CI_COMMIT_MESSAGE": (
            "Merge branch 'tune' into 'main'\n\nTune depth\n\nSee merge request ml-team/demo-model-build!3"
        ),
    }.items():
        monkeypatch.setenv(key, value)


def read_s3(uri: str) -> bytes:
    bucket, _, key = uri[5:].partition("/")
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()


def packages() -> list[dict]:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    listed = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    return [sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in listed]


@pytest.mark.e2e
def test_local_run_registers_a_pending_model_with_metrics_test_data_provenance_and_reports(
    project, tmp_path, capsys, monkeypatch
):
    ci_push_after_merge(monkeypatch)
    reports = tmp_path / "reports"
    code = run_pipeline.run_pipeline(
        ["--local", "--input-data", str(project), "--workdir", str(tmp_path / "w"), "--report-dir", str(reports),
         "--artifacts-dir", str(tmp_path / "artifacts")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "RegisterAbaloneModel" in out and "Succeeded" in out

    (package,) = packages()
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    evaluation = json.loads(read_s3(package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]))
    mse = evaluation["regression_metrics"]["mse"]["value"]
    assert mse < 6.0

    metadata = package["CustomerMetadataProperties"]
    assert metadata["GitCommit"] == SHA and metadata["GitBranch"] == "main"
    assert metadata["GitLabPipelineUrl"] == BUILD_URL
    assert metadata["GitLabMergeRequestUrl"] == f"{SERVER}/ml-team/demo-model-build/-/merge_requests/3"
    assert SHA in package["ModelPackageDescription"] and BUILD_URL in package["ModelPackageDescription"]
    assert package["MetadataProperties"] == {
        "CommitId": SHA, "Repository": f"{SERVER}/ml-team/demo-model-build", "GeneratedBy": BUILD_URL,
    }
    test_rows = read_s3(metadata["TestDataS3Uri"]).decode().strip().splitlines()
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
    served_mse = sum((p - t) ** 2 for p, t in zip(served, truth, strict=True)) / len(truth)
    assert served_mse == pytest.approx(mse, rel=1e-6)  # the endpoint's code gives the evaluated numbers
    definition = json.loads((tmp_path / "artifacts" / "pipeline-definition.json").read_text())
    assert [s["Name"] for s in definition["Steps"]][:3] == [
        "PreprocessAbaloneData",
        "TrainAbaloneModel",
        "PackageAbaloneModel",
    ]

    assert json.loads((reports / "evaluation.json").read_text()) == evaluation
    metrics = dict(line.split() for line in (reports / "metrics.txt").read_text().splitlines())
    assert float(metrics["test_mse"]) == mse and int(metrics["test_rows"]) == evaluation["test_rows"]
    run = json.loads((reports / "run.json").read_text())
    assert run["registered_model_package_arn"] == package["ModelPackageArn"]
    assert run["quality_gate_passed"] is True and run["mse_threshold"] == 6.0
    last = out.strip().splitlines()[-2:]
    assert last == [
        f"quality gate passed: test MSE {mse:.4f} <= the threshold 6 (MseThreshold)",
        f"registered {package['ModelPackageArn']}",
    ]


@pytest.mark.e2e
def test_a_candidate_above_the_threshold_is_reviewed_and_ends_the_log_with_metric_value_and_threshold(
    project, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a relative work dir, as in CI
    monkeypatch.setenv("CI_MERGE_REQUEST_IID", "3")
    code = run_pipeline.run_pipeline(
        ["--local", "--input-data", str(project), "--workdir", "w", "--artifacts-dir", "artifacts",
         "--parameter", "MseThreshold=0.0001", "--candidate", "--review"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "FailMSEAboveThreshold" in captured.out
    reports = tmp_path / "reports"
    mse = json.loads((reports / "evaluation.json").read_text())["regression_metrics"]["mse"]["value"]
    assert captured.err.strip().splitlines()[-1] == (
        f"run-pipeline: quality gate failed: test MSE {mse:.4f} is above the threshold 0.0001 (MseThreshold); "
        "nothing was registered"
    )
    assert packages() == []
    note = (reports / "mr-note.md").read_text()  # the review still happens, and says why it fails
    assert f"| mse | {mse:.4f} |" in note and "**Quality gate: fails**" in note
    assert "No Approved version" in note and "MR_NOTE_TOKEN is not set" in captured.out


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
