"""Build the pipeline offline under moto and check the DAG it describes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from support import BUCKET, GROUP, REGION, ROLE, use_fresh_moto

from pipelines.abalone import hyperparameters as hp
from pipelines.abalone import pipeline as abalone
from pipelines.local.runner import step_graph


def build(name: str = "abalone-test", **options: Any) -> str:
    return abalone.get_pipeline(
        region=REGION,
        role=ROLE,
        default_bucket=BUCKET,
        pipeline_name=name,
        model_package_group_name=GROUP,
        base_job_prefix=name,
        **options,
    ).definition()


@pytest.fixture(scope="module")
def definition(moto_server: str) -> Iterator[dict[str, Any]]:
    """Built once for the module (about 1.5 s a build); tests that read S3 build their own."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_fresh_moto(moto_server, monkeypatch)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield json.loads(build())


def steps_by_name(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return step_graph(definition)[0]


def test_steps_and_their_dependencies(definition):
    steps, parents = step_graph(definition)
    assert [s["Name"] for s in definition["Steps"]] == [
        abalone.STEP_PREPROCESS,
        abalone.STEP_TRAIN,
        abalone.STEP_PACKAGE,
        abalone.STEP_EVALUATE,
        abalone.STEP_CONDITION,
    ]
    assert parents[abalone.STEP_TRAIN] == {abalone.STEP_PREPROCESS}
    assert parents[abalone.STEP_PACKAGE] == {abalone.STEP_TRAIN}
    assert parents[abalone.STEP_EVALUATE] == {abalone.STEP_PREPROCESS, abalone.STEP_PACKAGE}
    assert abalone.STEP_PACKAGE in parents[abalone.STEP_REGISTER]
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
        "Std:Join": {
            "On": "/",
            "Values": [
                {"Get": f"Steps.{abalone.STEP_PACKAGE}.ProcessingOutputConfig.Outputs['packaged'].S3Output.S3Uri"},
                "model.tar.gz",
            ],
        }
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


def test_project_tags():
    assert abalone.project_tags("demo", "p-1") == [
        {"Key": "sagemaker:project-name", "Value": "demo"},
        {"Key": "sagemaker:project-id", "Value": "p-1"},
    ]
    assert abalone.project_tags(None, None) == []


def test_the_registered_container_serves_the_packaged_entry_point_in_script_mode(definition):
    (container,) = steps_by_name(definition)[abalone.STEP_REGISTER]["Arguments"]["InferenceSpecification"]["Containers"]
    assert container["Image"].endswith(f"/sagemaker-xgboost:{hp.XGBOOST_CONTAINER_VERSION}")
    environment = container["Environment"]
    assert environment["SAGEMAKER_PROGRAM"] == "inference.py"
    assert environment["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert environment["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] == "text/csv"
    for name in abalone.SCRIPT_MODE_VARIABLES:
        assert environment[name].strip(), name
    abalone.check_serving_containers([container])


@pytest.mark.parametrize(
    "environment",
    [
        {"SAGEMAKER_PROGRAM": "", "SAGEMAKER_SUBMIT_DIRECTORY": ""},  # what SDK v3 ModelBuilder.register writes
        {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": " "},
        {"SAGEMAKER_PROGRAM": "inference.py"},
    ],
)
def test_an_empty_or_half_script_mode_environment_is_caught(environment):
    with pytest.raises(abalone.DefinitionError, match="SAGEMAKER_"):
        abalone.check_serving_containers([{"Image": "x", "Environment": environment}])


def test_algorithm_mode_without_script_variables_is_accepted():
    abalone.check_serving_containers([{"Image": "x", "Environment": {"SAGEMAKER_REGION": REGION}}, {"Image": "y"}])


def test_the_package_step_puts_the_shared_model_code_next_to_the_model(aws):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    steps = steps_by_name(json.loads(build()))
    package = steps[abalone.STEP_PACKAGE]["Arguments"]
    inputs = {i["InputName"]: i["S3Input"] for i in package["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == {"Get": f"Steps.{abalone.STEP_TRAIN}.ModelArtifacts.S3ModelArtifacts"}
    code_uri = inputs[abalone.MODEL_CODE_INPUT]["S3Uri"]
    bucket, _, prefix = code_uri[5:].partition("/")
    keys = {
        o["Key"]
        for o in boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    }
    assert {key.rsplit("/", 1)[-1] for key in keys} == set(abalone.MODEL_CODE)
    preprocess = steps[abalone.STEP_PREPROCESS]["Arguments"]
    assert preprocess["Environment"]["PYTHONPATH"] == inputs[abalone.MODEL_CODE_INPUT]["LocalPath"]
    assert code_uri in [i["S3Input"]["S3Uri"] for i in preprocess["ProcessingInputs"]]
    evaluate_inputs = {
        i["InputName"]: i["S3Input"]["S3Uri"] for i in steps[abalone.STEP_EVALUATE]["Arguments"]["ProcessingInputs"]
    }
    assert evaluate_inputs["model"] == {
        "Get": f"Steps.{abalone.STEP_PACKAGE}.ProcessingOutputConfig.Outputs['packaged'].S3Output.S3Uri"
    }


def test_cost_controls_caching_spot_and_retries_are_in_the_definition(definition):
    steps = steps_by_name(definition)
    for name in (abalone.STEP_PREPROCESS, abalone.STEP_TRAIN, abalone.STEP_PACKAGE, abalone.STEP_EVALUATE):
        assert steps[name]["CacheConfig"] == {"Enabled": True, "ExpireAfter": abalone.CACHE_EXPIRY}
        kinds = [set(policy["ExceptionType"]) for policy in steps[name]["RetryPolicies"]]
        assert {"Step.THROTTLING", "Step.SERVICE_FAULT"} in kinds
        assert {"SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT", "SageMaker.JOB_INTERNAL_ERROR"} in kinds
    train = steps[abalone.STEP_TRAIN]["Arguments"]
    assert train["EnableManagedSpotTraining"] is True
    stopping = train["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    checkpoint = train["CheckpointConfig"]
    assert checkpoint["LocalPath"] == abalone.CHECKPOINT_LOCAL_PATH
    assert "Execution.PipelineExecutionId" in json.dumps(checkpoint["S3Uri"])
    register = steps[abalone.STEP_REGISTER]
    assert [set(p["ExceptionType"]) for p in register["RetryPolicies"]] == [{"Step.THROTTLING", "Step.SERVICE_FAULT"}]


def test_caching_and_spot_can_be_turned_off(aws):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    steps = steps_by_name(json.loads(build(enable_caching=False, use_spot_training=False)))
    assert steps[abalone.STEP_PREPROCESS]["CacheConfig"]["Enabled"] is False
    assert steps[abalone.STEP_TRAIN]["Arguments"].get("EnableManagedSpotTraining") in (None, False)
