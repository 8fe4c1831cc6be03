"""The endpoint template's contract with the steps: parameters, conditions, names and outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from steps.build import BUILD_PARAMETERS

SEED = Path(__file__).resolve().parents[2]


class Loader(yaml.SafeLoader):
    pass


def intrinsic(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> dict[str, Any]:
    """`!Ref X` -> {"Ref": X}: short-form intrinsics as plain data."""
    if isinstance(node, yaml.ScalarNode):
        return {tag: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {tag: loader.construct_sequence(node, deep=True)}
    return {tag: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


Loader.add_multi_constructor("!", intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(yaml.load((SEED / "endpoint-config-template.yml").read_text(), Loader=Loader))  # noqa: S506


def test_the_model_serves_the_package_with_network_isolation(template: dict[str, Any]):
    model = template["Resources"]["Model"]["Properties"]
    assert model["PrimaryContainer"] == {"ModelPackageName": {"Ref": "ModelPackageArn"}}
    assert model["EnableNetworkIsolation"] is True
    # Named in the project's IAM namespace (the CI role may create only gitlab-mlops-<id>-*), with the
    # digest of what is deployed, so a new package gets new names and CloudFormation can replace them.
    named = "gitlab-mlops-${SageMakerProjectId}-${StageName}-${ResourceSuffix}"
    assert model["ModelName"] == {"Sub": named}
    assert template["Resources"]["EndpointConfig"]["Properties"]["EndpointConfigName"] == {"Sub": named}
    assert template["Parameters"]["ResourceSuffix"]["AllowedPattern"] == "^[a-f0-9]{10}$"


def test_the_endpoint_is_named_after_project_and_stage(template: dict[str, Any]):
    endpoint = template["Resources"]["Endpoint"]["Properties"]
    assert endpoint["EndpointName"] == {"Sub": "${SageMakerProjectName}-${SageMakerProjectId}-${StageName}"}
    assert template["Parameters"]["StageName"]["AllowedValues"] == ["staging", "prod"]


def test_autoscaling_and_data_capture_are_optional(template: dict[str, Any]):
    resources = template["Resources"]
    assert resources["ScalableTarget"]["Condition"] == "AutoScalingEnabled"
    assert resources["ScalingPolicy"]["Condition"] == "RealtimeAutoScaling"
    assert resources["AsyncBacklogPolicy"]["Condition"] == "AsyncAutoScaling"
    tracking = resources["ScalingPolicy"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )
    capture = resources["EndpointConfig"]["Properties"]["DataCaptureConfig"]["If"]
    assert capture[0] == "DataCaptureEnabled"
    assert capture[1]["DestinationS3Uri"] == {"Sub": "s3://${ArtifactBucket}/data-capture/${StageName}"}


def test_outputs_name_the_endpoint_model_and_config(template: dict[str, Any]):
    assert {"EndpointName", "ModelName", "EndpointConfigName"} <= set(template["Outputs"])


def test_every_parameter_without_default_is_filled_by_the_build_step(template: dict[str, Any]):
    required = {name for name, spec in template["Parameters"].items() if "Default" not in spec}
    assert required == set(BUILD_PARAMETERS)


@pytest.mark.parametrize("config", ["staging-config.json", "prod-config.json"])
def test_stage_configs_only_set_template_parameters(template: dict[str, Any], config: str):
    settings = json.loads((SEED / config).read_text())
    assert set(settings["Parameters"]) <= set(template["Parameters"]) - set(BUILD_PARAMETERS)


def test_production_scales_and_captures_data_by_default():
    prod = json.loads((SEED / "prod-config.json").read_text())["Parameters"]
    assert prod["EnableAutoScaling"] is True
    assert prod["EnableDataCapture"] is True
    assert prod["AutoScalingMinCapacity"] <= prod["AutoScalingMaxCapacity"]


def test_each_hosting_mode_shapes_the_endpoint_config(template: dict[str, Any]):
    conditions, resources = template["Conditions"], template["Resources"]
    assert template["Parameters"]["HostingMode"]["AllowedValues"] == [
        "realtime",
        "serverless",
        "async",
        "batch",
    ]
    # batch: no endpoint at all, the model only (the CI job runs the transform jobs)
    assert conditions["HasEndpoint"] == {"Not": [{"Equals": [{"Ref": "HostingMode"}, "batch"]}]}
    for name in ("EndpointConfig", "Endpoint"):
        assert resources[name]["Condition"] == "HasEndpoint"
    assert "Condition" not in resources["Model"]
    config = resources["EndpointConfig"]["Properties"]
    serverless, instances = config["ProductionVariants"][0]["If"][1:]
    assert serverless["ServerlessConfig"] == {
        "MemorySizeInMB": {"Ref": "ServerlessMemorySizeInMB"},
        "MaxConcurrency": {"Ref": "ServerlessMaxConcurrency"},
    }
    # SageMaker refuses an instance type or count on a serverless variant
    assert not {"InstanceType", "InitialInstanceCount"} & set(serverless)
    assert {"InstanceType", "InitialInstanceCount"} <= set(instances)
    condition, asynchronous, _ = config["AsyncInferenceConfig"]["If"]
    assert condition == "IsAsync"
    assert asynchronous["OutputConfig"]["S3OutputPath"] == {"Ref": "AsyncS3OutputPath"}
    # scale to zero: min capacity 0 and a step policy on the backlog-without-capacity alarm
    assert resources["ScalableTarget"]["Properties"]["MinCapacity"]["If"][:2] == ["AsyncFromZero", 0]
    alarm = resources["AsyncBacklogWithoutCapacityAlarm"]["Properties"]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["AlarmActions"] == [{"Ref": "AsyncFromZeroPolicy"}]


def test_a_guarded_rollout_shifts_traffic_blue_green_and_rolls_back_on_three_alarms(template: dict[str, Any]):
    resources = template["Resources"]
    endpoint = resources["Endpoint"]["Properties"]
    condition, config, _ = endpoint["DeploymentConfig"]["If"]
    assert condition == "HasRollout"
    canary = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["If"][1]
    assert canary["Type"] == "CANARY"
    assert canary["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": {"Ref": "RolloutStepPercent"}}
    alarms = [a["AlarmName"]["Ref"] for a in config["AutoRollbackConfiguration"]["Alarms"]]
    metrics = {resources[a]["Properties"]["MetricName"] for a in alarms}
    assert metrics == {"ModelLatency", "Invocation5XXErrors", "InvocationModelErrors"}
    for alarm in alarms:
        assert resources[alarm]["Condition"] == "HasRollout"
        # named gitlab-mlops-<id>-<stage>-*: the stage's CI role may manage only those alarms
        assert resources[alarm]["Properties"]["AlarmName"]["Sub"].startswith(
            "gitlab-mlops-${SageMakerProjectId}-${StageName}-"
        )
    # capacity: with autoscaling the deploy step asks to keep the count autoscaling reached
    assert endpoint["RetainAllVariantProperties"] == {"If": ["RetainCount", True, False]}
    excluded = endpoint["ExcludeRetainedVariantProperties"]["If"][1]
    assert {e["VariantPropertyType"] for e in excluded} == {"DesiredWeight", "DataCaptureConfig"}
