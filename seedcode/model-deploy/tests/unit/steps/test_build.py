"""The build step picks the right package, refuses wrong ones and writes each stage's files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from steps.build import build, main, stage_files, template_parameters
from steps.common import Project, StepError

SEED = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(aws: str) -> Project:
    import os

    return Project.from_env(os.environ)


def test_uses_the_requested_package_even_when_a_newer_one_is_approved(
    registry: Any, project: Project, tmp_path: Path
):
    registry.group()
    older = registry.package()
    registry.package()
    package = build(registry.sm, project, older, SEED, tmp_path)
    assert package.arn == older
    written = json.loads((tmp_path / "model-package.json").read_text())
    assert written["arn"] == older
    assert written["test_data_s3_uri"].endswith("/v1/test.csv")
    assert written["evaluation_s3_uri"].endswith("/v1/evaluation.json")


def test_takes_the_latest_approved_package_when_none_is_requested(
    registry: Any, project: Project, tmp_path: Path
):
    registry.group()
    registry.package()
    newest_approved = registry.package()
    registry.package(status="PendingManualApproval")
    registry.package(status="Rejected")
    assert build(registry.sm, project, None, SEED, tmp_path).arn == newest_approved


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_refuses_a_package_that_is_not_approved(registry: Any, project: Project, tmp_path: Path, status: str):
    registry.group()
    arn = registry.package(status=status)
    with pytest.raises(StepError, match=f"is {status}, not Approved"):
        build(registry.sm, project, arn, SEED, tmp_path)
    assert not (tmp_path / "model-package.json").exists()


def test_refuses_a_package_of_another_group(registry: Any, project: Project, tmp_path: Path):
    registry.group()
    registry.group("someone-else")
    foreign = registry.package(group="someone-else")
    with pytest.raises(
        StepError,
        match=f"belongs to group someone-else, not to this project's group {project.model_package_group}",
    ):
        build(registry.sm, project, foreign, SEED, tmp_path)


def test_explains_when_the_group_has_no_approved_package(registry: Any, project: Project, tmp_path: Path):
    registry.group()
    registry.package(status="PendingManualApproval")
    with pytest.raises(StepError, match="has no Approved model package"):
        build(registry.sm, project, None, SEED, tmp_path)


def test_refuses_a_package_without_the_staging_test_data(registry: Any, project: Project, tmp_path: Path):
    registry.group()
    arn = registry.package(with_test_data=False)
    with pytest.raises(StepError, match="TestDataS3Uri"):
        build(registry.sm, project, arn, SEED, tmp_path)


def test_writes_cloudformation_parameter_and_tag_files_per_stage(
    registry: Any, project: Project, tmp_path: Path
):
    registry.group()
    arn = registry.package()
    build(registry.sm, project, arn, SEED, tmp_path)
    for stage, config_name in (("staging", "staging-config.json"), ("prod", "prod-config.json")):
        params = {
            p["ParameterKey"]: p["ParameterValue"]
            for p in json.loads((tmp_path / f"{stage}-parameters.json").read_text())
        }
        tags = {t["Key"]: t["Value"] for t in json.loads((tmp_path / f"{stage}-tags.json").read_text())}
        config = json.loads((SEED / config_name).read_text())
        assert params["ModelPackageArn"] == arn
        assert params["StageName"] == stage
        assert params["SageMakerProjectName"] == project.name
        assert params["ModelExecutionRoleArn"] == project.execution_role_arn
        assert params["ArtifactBucket"] == project.artifact_bucket
        assert params["EndpointInstanceType"] == config["Parameters"]["EndpointInstanceType"]
        assert tags["sagemaker:project-name"] == project.name
        assert tags["sagemaker:project-id"] == project.id
        assert tags["stage"] == stage
    prod = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in json.loads((tmp_path / "prod-parameters.json").read_text())
    }
    assert prod["EnableAutoScaling"] == "true"


def test_stage_config_errors_name_the_file_and_the_fix(project: Project):
    from steps.build import ModelPackage

    package = ModelPackage(
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1",
        "g",
        1,
        "Approved",
        "s3://b/e",
        "s3://b/t",
    )
    params = template_parameters((SEED / "endpoint-config-template.yml").read_text())
    with pytest.raises(StepError, match=r"staging-config.json: EndpointInstanceTyp are not parameters"):
        stage_files(
            project,
            package,
            "staging",
            {"Parameters": {"EndpointInstanceTyp": "ml.m5.large"}},
            params,
            "staging-config.json",
        )
    with pytest.raises(StepError, match="ModelPackageArn are filled in by the build step"):
        stage_files(
            project,
            package,
            "staging",
            {"Parameters": {"ModelPackageArn": "x"}},
            params,
            "staging-config.json",
        )


def test_cli_reads_model_package_arn_from_the_pipeline_variables(
    registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    registry.group()
    wanted = registry.package()
    registry.package()
    monkeypatch.setenv("MODEL_PACKAGE_ARN", wanted)
    assert main(["--out", str(tmp_path), "--repo-dir", str(SEED)]) == 0
    assert json.loads((tmp_path / "model-package.json").read_text())["arn"] == wanted

    rejected = registry.package(status="Rejected")
    monkeypatch.setenv("MODEL_PACKAGE_ARN", rejected)
    assert main(["--out", str(tmp_path / "again"), "--repo-dir", str(SEED)]) == 1
    err = capsys.readouterr().err
    assert "ERROR: model package" in err and "Traceback" not in err


def test_cli_names_a_missing_ci_variable(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("MODEL_PACKAGE_GROUP_NAME")
    shutil.copy(SEED / "staging-config.json", tmp_path)
    assert main(["--out", str(tmp_path)]) == 1
    assert "MODEL_PACKAGE_GROUP_NAME is not set" in capsys.readouterr().err


@pytest.mark.parametrize(
    "environment",
    [
        # what SDK v3 ModelBuilder.register writes without an entry point
        {"SAGEMAKER_PROGRAM": "", "SAGEMAKER_SUBMIT_DIRECTORY": ""},
        {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": " "},
    ],
)
def test_refuses_a_package_whose_container_could_not_pass_its_health_check(
    registry: Any, project: Project, tmp_path: Path, environment: dict[str, str]
):
    registry.group()
    arn = registry.package(environment=environment)
    with pytest.raises(StepError, match="to an empty value; the serving image would fail its /ping"):
        build(registry.sm, project, arn, SEED, tmp_path)
    assert not (tmp_path / "model-package.json").exists()


def test_accepts_script_mode_with_the_entry_point_named(registry: Any, project: Project, tmp_path: Path):
    registry.group()
    arn = registry.package(
        environment={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    )
    assert build(registry.sm, project, arn, SEED, tmp_path).arn == arn
