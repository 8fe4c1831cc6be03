"""Build the pipeline offline under moto and check the DAG it describes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from conftest import use_moto
from support import BUCKET, GROUP, REGION, ROLE

from pipelines.abalone import hyperparameters as hp
from pipelines.abalone import pipeline as abalone
from pipelines.local.runner import step_graph


def build(name: str = "abalone-test") -> str:
    return abalone.get_pipeline(
        region=REGION,
        role=ROLE,
        default_bucket=BUCKET,
        pipeline_name=name,
        model_package_group_name=GROUP,
        base_job_prefix=name,
    ).definition()


@pytest.fixture(scope="module")
def definition(moto_server: str) -> Iterator[dict[str, Any]]:
    """Built once for the module (the SDK takes about a second per definition); tests only read it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_moto(moto_server, monkeypatch)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield json.loads(build())


def steps_by_name(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return step_graph(definition)[0]


def test_steps_and_their_dependencies(definition):
    steps, parents = step_graph(definition)
    assert [s["Name"] for s in definition["Steps"]] == [
        abalone.STEP_PREPROCESS,
        abalone.STEP_TRAIN,
        abalone.STEP_EVALUATE,
        abalone.STEP_CONDITION,
    ]
    assert parents[abalone.STEP_TRAIN] == {abalone.STEP_PREPROCESS}
    assert parents[abalone.STEP_EVALUATE] == {abalone.STEP_PREPROCESS, abalone.STEP_TRAIN}
    assert parents[abalone.STEP_CONDITION] == {abalone.STEP_EVALUATE}
    assert abalone.STEP_CONDITION in parents[abalone.STEP_REGISTER_GATE]
    assert abalone.STEP_REGISTER_GATE in parents[abalone.STEP_REGISTER]
    assert steps[abalone.STEP_REGISTER]["Type"] == "RegisterModel"
    assert steps[abalone.STEP_FAIL]["Type"] == "Fail"


def test_training_uses_the_builtin_xgboost_container_with_validation_channel_and_early_stopping(definition):
    train = steps_by_name(definition)[abalone.STEP_TRAIN]["Arguments"]
    assert train["AlgorithmSpecification"]["TrainingImage"].endswith(
        f"/sagemaker-xgboost:{hp.XGBOOST_CONTAINER_VERSION}"
    )
    assert [c["ChannelName"] for c in train["InputDataConfig"]] == ["train", "validation"]
    assert {c["ContentType"] for c in train["InputDataConfig"]} == {"text/csv"}
    assert train["HyperParameters"] == hp.DEFAULT
    assert "early_stopping_rounds" in train["HyperParameters"]
    assert "silent" not in train["HyperParameters"]


def test_condition_gates_registration_on_mse_against_the_threshold_parameter(definition):
    condition = steps_by_name(definition)[abalone.STEP_CONDITION]["Arguments"]
    (check,) = condition["Conditions"]
    assert check["Type"] == "LessThanOrEqualTo"
    assert check["LeftValue"]["Std:JsonGet"]["Path"] == "regression_metrics.mse.value"
    assert check["RightValue"] == {"Get": "Parameters.MseThreshold"}
    assert [s["Name"] for s in condition["IfSteps"]] == [abalone.STEP_REGISTER_GATE]
    assert [s["Name"] for s in condition["ElseSteps"]] == [abalone.STEP_FAIL]
    message = condition["ElseSteps"][0]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert "MSE" in message and {"Get": "Parameters.MseThreshold"} in message


def test_a_candidate_passing_the_gate_is_registered_only_when_register_model_is_true(definition):
    gate = steps_by_name(definition)[abalone.STEP_REGISTER_GATE]["Arguments"]
    assert gate["Conditions"] == [
        {"Type": "Equals", "LeftValue": {"Get": f"Parameters.{abalone.PARAM_REGISTER}"}, "RightValue": True}
    ]
    assert [s["Name"] for s in gate["IfSteps"]] == [abalone.STEP_REGISTER]
    assert gate["ElseSteps"] == []


def test_registration_records_commit_branch_pipeline_and_merge_request(definition):
    register = steps_by_name(definition)[abalone.STEP_REGISTER]["Arguments"]

    def param(name: str) -> dict[str, str]:
        return {"Get": f"Parameters.{name}"}

    assert register["MetadataProperties"] == {
        "CommitId": param(abalone.PARAM_COMMIT),
        "Repository": param(abalone.PARAM_REPOSITORY),
        "GeneratedBy": param(abalone.PARAM_PIPELINE_URL),
    }
    metadata = register["CustomerMetadataProperties"]
    assert metadata[abalone.METADATA_GIT_COMMIT] == param(abalone.PARAM_COMMIT)
    assert metadata[abalone.METADATA_GIT_BRANCH] == param(abalone.PARAM_BRANCH)
    assert metadata[abalone.METADATA_PIPELINE_URL] == param(abalone.PARAM_PIPELINE_URL)
    assert metadata[abalone.METADATA_MERGE_REQUEST_URL] == param(abalone.PARAM_MERGE_REQUEST_URL)
    description = register["ModelPackageDescription"]["Std:Join"]["Values"]
    for name in (abalone.PARAM_COMMIT, abalone.PARAM_BRANCH, abalone.PARAM_PIPELINE_URL,
                 abalone.PARAM_MERGE_REQUEST_URL):
        assert param(name) in description


def test_registration_targets_the_group_with_csv_metrics_and_test_data(definition):
    register = steps_by_name(definition)[abalone.STEP_REGISTER]["Arguments"]
    assert register["ModelPackageGroupName"] == GROUP
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    spec = register["InferenceSpecification"]
    assert spec["SupportedContentTypes"] == ["text/csv"]
    assert spec["SupportedRealtimeInferenceInstanceTypes"] and spec["SupportedTransformInstanceTypes"]
    assert spec["Containers"][0]["ModelDataUrl"] == {
        "Get": f"Steps.{abalone.STEP_TRAIN}.ModelArtifacts.S3ModelArtifacts"
    }
    statistics = register["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    assert statistics["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"
    assert abalone.METADATA_TEST_DATA_URI in register["CustomerMetadataProperties"]


def test_parameters_and_their_defaults(definition):
    parameters = {p["Name"]: p for p in definition["Parameters"]}
    assert parameters["ModelApprovalStatus"]["DefaultValue"] == "PendingManualApproval"
    assert parameters["MseThreshold"]["Type"] == "Float"
    assert parameters["InputDataUrl"]["DefaultValue"] == abalone.default_input_data(REGION)
    assert parameters[abalone.PARAM_REGISTER] == {"Name": abalone.PARAM_REGISTER, "Type": "Boolean",
                                                  "DefaultValue": True}
    for name in (abalone.PARAM_COMMIT, abalone.PARAM_BRANCH, abalone.PARAM_REPOSITORY, abalone.PARAM_PIPELINE_URL,
                 abalone.PARAM_MERGE_REQUEST_URL):
        # CustomerMetadataProperties values need at least one character
        assert parameters[name]["DefaultValue"] == abalone.UNKNOWN
    assert {
        "ProcessingInstanceType",
        "ProcessingInstanceCount",
        "TrainingInstanceType",
        "TrainingInstanceCount",
    } <= set(parameters)


def test_definition_is_deterministic(definition, aws):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    assert json.loads(build()) == definition
    assert build() == build()


def test_project_tags():
    assert abalone.project_tags("demo", "p-1") == [
        {"Key": "sagemaker:project-name", "Value": "demo"},
        {"Key": "sagemaker:project-id", "Value": "p-1"},
    ]
    assert abalone.project_tags(None, None) == []
