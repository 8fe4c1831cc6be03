"""The deploy step creates or updates a stage's stack through a change set, against moto's CloudFormation."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from steps.build import build
from steps.common import Project, StepError
from steps.deploy import Waiting, apply_change_set, deploy, main

SEED = Path(__file__).resolve().parents[3]
TEMPLATE = (SEED / "endpoint-config-template.yml").read_text()
NO_WAIT = Waiting(delay_seconds=0, timeout_seconds=5, sleep=lambda _: None)


@pytest.fixture
def project(aws: str) -> Project:
    return Project.from_env(os.environ)


@pytest.fixture
def built(registry: Any, project: Project, tmp_path: Path) -> tuple[str, Path]:
    registry.group()
    arn = registry.package()
    build(registry.sm, project, arn, SEED, tmp_path)
    return arn, tmp_path


def run(client: Any, project: Project, stage: str, build_dir: Path, name: str, logs: list[str]) -> Any:
    return deploy(
        client("cloudformation"),
        client("sagemaker"),
        project,
        stage,
        TEMPLATE,
        build_dir,
        name,
        NO_WAIT,
        logs.append,
    )


def test_deploys_staging_then_prod_for_an_approved_package(
    client: Any, project: Project, built: tuple[str, Path]
):
    arn, build_dir = built
    cfn, sm = client("cloudformation"), client("sagemaker")
    logs: list[str] = []
    for stage in ("staging", "prod"):
        if stage == "prod":  # what the staging job leaves when its test passed
            (build_dir / "staging-passed.json").write_text(json.dumps({"model_package_arn": arn}))
        result = run(client, project, stage, build_dir, f"deploy-{stage}-1", logs)
        stack = cfn.describe_stacks(StackName=project.stack_name(stage))["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["ModelPackageArn"] == arn
        assert result.changed is True
        assert result.endpoint_status == "InService"
        assert sm.describe_endpoint(EndpointName=result.endpoint_name)["EndpointStatus"] == "InService"
        written = json.loads((build_dir / f"{stage}-deploy.json").read_text())
        assert written["endpoint_name"] == result.endpoint_name
        assert written["model_package_arn"] == arn
    assert len(sm.list_endpoints()["Endpoints"]) == 2
    assert any("InService" in line and arn in line for line in logs)


def test_redeploying_the_same_package_is_a_successful_no_op(
    client: Any, project: Project, built: tuple[str, Path]
):
    _, build_dir = built
    cfn = client("cloudformation")
    first = run(client, project, "staging", build_dir, "deploy-1", [])
    logs: list[str] = []
    again = run(client, project, "staging", build_dir, "deploy-2", logs)
    assert again.changed is False
    assert again.endpoint_name == first.endpoint_name
    assert again.endpoint_status == "InService"
    assert (
        cfn.describe_stacks(StackName=project.stack_name("staging"))["Stacks"][0]["StackStatus"]
        == "CREATE_COMPLETE"
    )
    # The empty change set is cleaned up so the console does not fill with them.
    left = cfn.list_change_sets(StackName=project.stack_name("staging"))["Summaries"]
    assert "deploy-2" not in [summary["ChangeSetName"] for summary in left]
    assert any(line.startswith("No changes") for line in logs)


def test_a_new_package_updates_the_existing_stack(
    client: Any, registry: Any, project: Project, built: tuple[str, Path], tmp_path: Path
):
    _, build_dir = built
    run(client, project, "staging", build_dir, "deploy-1", [])
    newer = registry.package()
    newer_dir = tmp_path / "newer"
    build(registry.sm, project, newer, SEED, newer_dir)
    result = run(client, project, "staging", newer_dir, "deploy-2", [])
    stack = client("cloudformation").describe_stacks(StackName=project.stack_name("staging"))["Stacks"][0]
    assert result.changed is True
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["ModelPackageArn"] == newer


class TagRecorder:
    """moto's SageMaker, with AddTags/DeleteTags on model packages recorded (moto 5.2 cannot tag them)."""

    def __init__(self, sm: Any) -> None:
        self._sm = sm
        self.calls: list[tuple[str, str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sm, name)

    def add_tags(self, ResourceArn: str, Tags: list[dict[str, str]]) -> None:  # noqa: N803 - boto3's names
        self.calls.append(("add", ResourceArn, Tags))

    def delete_tags(self, ResourceArn: str, TagKeys: list[str]) -> None:  # noqa: N803
        self.calls.append(("delete", ResourceArn, TagKeys))


def test_the_registry_says_which_version_each_stage_serves(
    client: Any, registry: Any, project: Project, built: tuple[str, Path], tmp_path: Path
):
    first, build_dir = built
    sm = TagRecorder(client("sagemaker"))
    url = "https://gitlab.example.com/ml/abalone-model-deploy/-/pipelines/8"
    deploy(client("cloudformation"), sm, project, "staging", TEMPLATE, build_dir, "d-1", NO_WAIT, print, url)
    assert sm.calls == [("add", first, [{"Key": "deployed-to:staging", "Value": url}])]

    newer = registry.package()
    newer_dir = tmp_path / "newer"
    build(registry.sm, project, newer, SEED, newer_dir)
    sm.calls.clear()
    result = deploy(client("cloudformation"), sm, project, "staging", TEMPLATE, newer_dir, "d-2", NO_WAIT,
                    print, url)
    assert result.previous_model_package_arn == first
    assert sm.calls == [("delete", first, ["deployed-to:staging"]),
                        ("add", newer, [{"Key": "deployed-to:staging", "Value": url}])]

    dotenv = dict(line.split("=", 1) for line in (newer_dir / "staging-deploy.env").read_text().splitlines())
    assert dotenv["DEPLOYED_MODEL_PACKAGE_ARN"] == newer
    assert dotenv["DEPLOYED_MODEL_VERSION"] == newer.rsplit("/", 1)[-1]
    assert dotenv["ENDPOINT_CONSOLE_URL"].endswith(f"#/endpoints/{result.endpoint_name}")


def test_a_registry_that_refuses_the_tag_leaves_a_warning_not_a_failed_deployment(
    client: Any, project: Project, built: tuple[str, Path]
):
    _, build_dir = built
    logs: list[str] = []
    result = run(client, project, "staging", build_dir, "deploy-1", logs)  # moto 5.2 fails to tag packages
    assert result.endpoint_status == "InService"
    warnings = [line for line in logs if line.startswith("WARNING: could not record in the model registry")]
    assert warnings and "sagemaker:AddTags" in warnings[0]


def test_cli_deploys_and_exits_zero(client: Any, project: Project, built: tuple[str, Path], capsys: Any):
    _, build_dir = built
    args = [
        "--stage",
        "staging",
        "--build-dir",
        str(build_dir),
        "--template",
        str(SEED / "endpoint-config-template.yml"),
    ]
    assert main(args) == 0
    assert "InService" in capsys.readouterr().out
    assert main(args) == 0
    assert "No changes" in capsys.readouterr().out


def test_cli_without_build_output_says_to_run_the_build_job(aws: str, tmp_path: Path, capsys: Any):
    assert main(["--stage", "prod", "--build-dir", str(tmp_path)]) == 1
    assert "run the build job first" in capsys.readouterr().err


class FailingStack:
    """A CloudFormation client whose stack fails to create; records what the deploy step asked for."""

    def __init__(self, initial_status: str | None = None) -> None:
        self.status = initial_status
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.events = [self._event("old", "Stack", "CREATE_FAILED", "an older failure")]

    @staticmethod
    def _event(event_id: str, logical: str, status: str, reason: str) -> dict[str, Any]:
        return {
            "EventId": event_id,
            "LogicalResourceId": logical,
            "ResourceType": "AWS::SageMaker::Endpoint",
            "ResourceStatus": status,
            "ResourceStatusReason": reason,
            "Timestamp": datetime.now(UTC),
        }

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if self.status is None:
            from botocore.exceptions import ClientError

            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationError",
                        "Message": f"Stack with id {StackName} does not exist",
                    }
                },
                "DescribeStacks",
            )
        return {"Stacks": [{"StackName": StackName, "StackStatus": self.status}]}

    def delete_stack(self, **kwargs: Any) -> None:
        self.calls.append(("delete_stack", kwargs))
        self.status = None

    def create_change_set(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("create_change_set", kwargs))
        return {"Id": "cs-1"}

    def describe_change_set(self, **kwargs: Any) -> dict[str, str]:
        return {"Status": "CREATE_COMPLETE"}

    def describe_stack_events(self, **kwargs: Any) -> dict[str, Any]:
        return {"StackEvents": list(reversed(self.events))}

    def execute_change_set(self, **kwargs: Any) -> None:
        self.calls.append(("execute_change_set", kwargs))
        self.events.append(
            self._event("e1", "Endpoint", "CREATE_FAILED", "ResourceLimitExceeded: ml.p4d.24xlarge")
        )
        self.events.append(
            self._event("e2", "Stack", "ROLLBACK_COMPLETE", "The following resource(s) failed")
        )
        self.status = "ROLLBACK_COMPLETE"

    def get_paginator(self, name: str) -> Any:
        client = self

        class Pages:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                return [client.describe_stack_events(**kwargs)]

        return Pages()


def test_a_failed_deployment_prints_its_failure_events_and_raises():
    cfn = FailingStack()
    logs: list[str] = []
    with pytest.raises(StepError, match="deploying stack s failed \\(ROLLBACK_COMPLETE\\)"):
        apply_change_set(cfn, "s", TEMPLATE, [], [], "cs", NO_WAIT, logs.append)
    report = "\n".join(logs)
    assert "Endpoint (AWS::SageMaker::Endpoint): CREATE_FAILED: ResourceLimitExceeded" in report
    assert "an older failure" not in report  # only this deployment's events
    assert (
        next(kwargs for name, kwargs in cfn.calls if name == "create_change_set")["ChangeSetType"] == "CREATE"
    )


def test_a_stack_left_by_a_failed_first_create_is_deleted_and_created_again():
    cfn = FailingStack(initial_status="ROLLBACK_COMPLETE")
    with pytest.raises(StepError):
        apply_change_set(cfn, "s", TEMPLATE, [], [], "cs", NO_WAIT, lambda _: None)
    assert [name for name, _ in cfn.calls][:2] == ["delete_stack", "create_change_set"]
    assert cfn.calls[1][1]["ChangeSetType"] == "CREATE"


def test_a_busy_stack_is_not_touched():
    cfn = FailingStack(initial_status="UPDATE_IN_PROGRESS")
    with pytest.raises(StepError, match="is busy \\(UPDATE_IN_PROGRESS\\)"):
        apply_change_set(cfn, "s", TEMPLATE, [], [], "cs", NO_WAIT, lambda _: None)
    assert cfn.calls == []


def test_an_existing_stack_gets_an_update_change_set(client: Any, project: Project, built: tuple[str, Path]):
    cfn = FailingStack(initial_status="UPDATE_COMPLETE")
    with pytest.raises(StepError):
        apply_change_set(cfn, "s", TEMPLATE, [], [], "cs", NO_WAIT, lambda _: None)
    assert cfn.calls[0][1]["ChangeSetType"] == "UPDATE"
