"""Each hosting mode deploys what it promises, against moto's CloudFormation and SageMaker."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from steps.build import build
from steps.common import Project
from steps.deploy import Waiting, deploy

SEED = Path(__file__).resolve().parents[3]
TEMPLATE = (SEED / "endpoint-config-template.yml").read_text()
NO_WAIT = Waiting(delay_seconds=0, timeout_seconds=5, sleep=lambda _: None)


def build_with(registry: Any, tmp_path: Path, stage_configs: dict[str, dict[str, Any]]) -> tuple[str, Path]:
    """Build from a copy of the seed whose stage configs are replaced."""
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    shutil.copy(SEED / "endpoint-config-template.yml", repo)
    for stage in ("staging", "prod"):
        default = json.loads((SEED / f"{stage}-config.json").read_text())
        (repo / f"{stage}-config.json").write_text(json.dumps(stage_configs.get(stage, default)))
    groups = registry.sm.list_model_package_groups()["ModelPackageGroupSummaryList"]
    if not groups:
        registry.group()
    arn = registry.package()
    out = tmp_path / "build"
    build(registry.sm, Project.from_env(os.environ), arn, repo, out)
    return arn, out


def run(client: Any, stage: str, build_dir: Path) -> Any:
    return deploy(
        client("cloudformation"),
        client("sagemaker"),
        Project.from_env(os.environ),
        stage,
        TEMPLATE,
        build_dir,
        "deploy-20261202000000",
        NO_WAIT,
        lambda _: None,
    )


def variant(client: Any, endpoint: str) -> dict[str, Any]:
    sm = client("sagemaker")
    config = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    return dict(sm.describe_endpoint_config(EndpointConfigName=config))


def test_a_serverless_stage_has_memory_and_concurrency_and_no_instances(
    client: Any, registry: Any, tmp_path: Path
):
    config = {
        "Hosting": {"Mode": "serverless", "MemorySizeInMB": 4096, "MaxConcurrency": 8},
        "Parameters": {},
    }
    _, build_dir = build_with(registry, tmp_path, {"staging": config})
    result = run(client, "staging", build_dir)
    assert result.hosting_mode == "serverless" and result.endpoint_status == "InService"
    [production_variant] = variant(client, result.endpoint_name)["ProductionVariants"]
    assert production_variant["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 8}
    assert "InstanceType" not in production_variant and "InitialInstanceCount" not in production_variant


def test_an_async_stage_writes_its_results_under_the_artifacts_bucket(
    client: Any, registry: Any, tmp_path: Path
):
    topic = "arn:aws:sns:us-east-1:123456789012:abalone-done"
    config = {"Hosting": {"Mode": "async", "SuccessTopicArn": topic}, "Parameters": {}}
    _, build_dir = build_with(registry, tmp_path, {"staging": config})
    result = run(client, "staging", build_dir)
    output = variant(client, result.endpoint_name)["AsyncInferenceConfig"]["OutputConfig"]
    assert output["S3OutputPath"] == "s3://sagemaker-project-p-abc123xyz/async-inference/staging/output"
    assert output["NotificationConfig"] == {"SuccessTopic": topic}


def test_a_batch_stage_deploys_the_model_only_and_production_runs_the_transform(
    client: Any, registry: Any, tmp_path: Path
):
    batch = {"Hosting": {"Mode": "batch", "InputS3Uri": "s3://abalone-data/daily/"}, "Parameters": {}}
    _, build_dir = build_with(
        registry, tmp_path, {"staging": {**batch, "Hosting": {"Mode": "batch"}}, "prod": batch}
    )
    staging = run(client, "staging", build_dir)
    assert staging.endpoint_name == "" and staging.model_name and staging.transform_job == ""
    assert client("sagemaker").list_endpoints()["Endpoints"] == []
    (build_dir / "staging-passed.json").write_text(
        json.dumps({"model_package_arn": staging.model_package_arn})
    )
    prod = run(client, "prod", build_dir)
    job = client("sagemaker").describe_transform_job(TransformJobName=prod.transform_job)
    assert prod.transform_job.startswith("gitlab-mlops-p-abc123xyz-prod-")
    assert job["ModelName"] == prod.model_name
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://abalone-data/daily/"
    assert job["TransformInput"]["SplitType"] == "Line"
    assert prod.transform_output.startswith("s3://sagemaker-project-p-abc123xyz/batch-transform/prod/")
    assert "transform-jobs/" in (build_dir / "prod-deploy.env").read_text()


@pytest.mark.parametrize("mode", ["realtime", "serverless", "async", "batch"])
def test_every_mode_records_itself_in_the_dotenv_report(
    client: Any, registry: Any, tmp_path: Path, mode: str
):
    hosting = {"Mode": mode}
    _, build_dir = build_with(registry, tmp_path, {"staging": {"Hosting": hosting, "Parameters": {}}})
    run(client, "staging", build_dir)
    assert f"HOSTING_MODE={mode}\n" in (build_dir / "staging-deploy.env").read_text()


class RecordingCloudFormation:
    """moto's CloudFormation client that records each change set the deploy step creates."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.change_sets: list[dict[str, str]] = []

    def create_change_set(self, **kwargs: Any) -> Any:
        self.change_sets.append({p["ParameterKey"]: p["ParameterValue"] for p in kwargs["Parameters"]})
        return self._client.create_change_set(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def prod_config(instance_type: str, **rollout: Any) -> dict[str, Any]:
    prod = json.loads((SEED / "prod-config.json").read_text())
    prod["Parameters"]["EndpointInstanceType"] = instance_type
    if rollout:
        prod["Rollout"] = rollout
    return prod


def deploy_prod(cfn: Any, client: Any, registry: Any, tmp_path: Path, instance_type: str, name: str) -> Any:
    _, build_dir = build_with(registry, tmp_path / name, {"prod": prod_config(instance_type)})
    arn = json.loads((build_dir / "model-package.json").read_text())["arn"]
    (build_dir / "staging-passed.json").write_text(json.dumps({"model_package_arn": arn}))
    return deploy(
        cfn,
        client("sagemaker"),
        Project.from_env(os.environ),
        "prod",
        TEMPLATE,
        build_dir,
        f"deploy-{name}",
        NO_WAIT,
        lambda _: None,
    )


def test_an_instance_type_change_with_autoscaling_deregisters_first_then_registers_again(
    client: Any, registry: Any, tmp_path: Path
):
    cfn = RecordingCloudFormation(client("cloudformation"))
    deploy_prod(cfn, client, registry, tmp_path, "ml.m5.large", "first")
    assert cfn.change_sets[-1]["RetainInstanceCount"] == "false"  # a new endpoint takes the config's count
    deploy_prod(cfn, client, registry, tmp_path, "ml.m5.xlarge", "second")
    paused, updated = cfn.change_sets[-2:]
    # 1: the stack as it was, autoscaling off (CloudFormation deregisters the scalable target)
    assert (paused["EndpointInstanceType"], paused["EnableAutoScaling"]) == ("ml.m5.large", "false")
    # 2: the new instance type with autoscaling on again, keeping the instance count autoscaling reached
    assert (updated["EndpointInstanceType"], updated["EnableAutoScaling"]) == ("ml.m5.xlarge", "true")
    assert updated["RetainInstanceCount"] == "true"
    # (moto's CloudFormation skips ScalableTarget: what CloudFormation then does is in the template, whose
    # ScalableTarget names the endpoint, so it is registered after the endpoint update.)


def test_a_redeploy_with_autoscaling_keeps_the_instance_count_and_does_not_pause(
    client: Any, registry: Any, tmp_path: Path
):
    cfn = RecordingCloudFormation(client("cloudformation"))
    deploy_prod(cfn, client, registry, tmp_path, "ml.m5.large", "first")
    deploy_prod(cfn, client, registry, tmp_path, "ml.m5.large", "second")
    assert len(cfn.change_sets) == 2
    assert cfn.change_sets[-1]["RetainInstanceCount"] == "true"


def test_production_rolls_out_as_a_canary_with_alarm_rollback_by_default(
    client: Any, registry: Any, tmp_path: Path
):
    cfn = RecordingCloudFormation(client("cloudformation"))
    deploy_prod(cfn, client, registry, tmp_path, "ml.m5.large", "first")
    parameters = cfn.change_sets[-1]
    assert parameters["RolloutStrategy"] == "canary" and parameters["RolloutStepPercent"] == "10"
    alarms = client("cloudwatch").describe_alarms(AlarmNamePrefix="gitlab-mlops-p-abc123xyz-prod-")[
        "MetricAlarms"
    ]
    assert {a["MetricName"] for a in alarms} == {
        "ModelLatency",
        "Invocation5XXErrors",
        "InvocationModelErrors",
    }
    latency = next(a for a in alarms if a["MetricName"] == "ModelLatency")
    assert latency["Threshold"] == 1_000_000  # 1000 ms in ModelLatency's microseconds
