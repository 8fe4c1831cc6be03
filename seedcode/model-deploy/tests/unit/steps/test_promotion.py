"""The production gate refuses stale pipelines: another version approved since, this one rejected, or a
package staging did not pass."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from steps.build import build
from steps.common import Project, StepError
from steps.deploy import Waiting, deploy
from steps.promotion import check_promotion, older_allowed

SEED = Path(__file__).resolve().parents[3]
GROUP = "abalone-p-abc123xyz"
NO_WAIT = Waiting(delay_seconds=0, sleep=lambda _: None)


def passed(arn: str) -> dict[str, str]:
    return {"model_package_arn": arn, "endpoint_name": "abalone-p-abc123xyz-staging"}


def test_the_newest_approved_package_that_passed_staging_is_promoted(registry: Any):
    registry.group()
    arn = registry.package()
    gate = check_promotion(registry.sm, GROUP, arn, passed(arn), older_allowed=False)
    assert gate.newest_approved_arn == arn


def test_a_pipeline_older_than_the_newest_approval_says_so_and_stops(registry: Any):
    registry.group()
    first = registry.package()
    second = registry.package()
    with pytest.raises(StepError, match=r"v1 is not the newest approval: v2 .* was approved after it.*stale"):
        check_promotion(registry.sm, GROUP, first, passed(first), older_allowed=False)
    # a deliberate rollback to the older version, asked for when the pipeline was started
    assert (
        check_promotion(registry.sm, GROUP, first, passed(first), older_allowed=True).newest_approved_arn
        == second
    )


def test_a_package_rejected_since_its_staging_test_is_not_promoted(registry: Any):
    registry.group()
    arn = registry.package()
    registry.sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected")
    with pytest.raises(StepError, match="is Rejected now, no longer Approved: this pipeline is stale"):
        check_promotion(registry.sm, GROUP, arn, passed(arn), older_allowed=True)


def test_only_the_package_staging_passed_with_is_promoted(registry: Any):
    registry.group()
    first = registry.package()
    second = registry.package()
    with pytest.raises(StepError, match="staging test passed with .*/1"):
        check_promotion(registry.sm, GROUP, second, passed(first), older_allowed=False)
    with pytest.raises(StepError, match="no passed staging test in this pipeline"):
        check_promotion(registry.sm, GROUP, second, None, older_allowed=False)


def test_the_rollback_switch_takes_only_true_or_false():
    assert older_allowed({}) is False
    assert older_allowed({"PROMOTE_OLDER_VERSION": "true"}) is True
    with pytest.raises(StepError, match="must be true or false"):
        older_allowed({"PROMOTE_OLDER_VERSION": "yes"})


def test_the_production_deploy_runs_the_gate_before_touching_the_stack(
    client: Any, registry: Any, tmp_path: Path
):
    registry.group()
    first = registry.package()
    project = Project.from_env(os.environ)
    build(registry.sm, project, first, SEED, tmp_path)
    (tmp_path / "staging-passed.json").write_text(json.dumps(passed(first)))
    registry.package()  # approved while the first pipeline waited at its production gate
    cfn = client("cloudformation")
    with pytest.raises(StepError, match="not the newest approval"):
        deploy(
            cfn,
            registry.sm,
            project,
            "prod",
            (SEED / "endpoint-config-template.yml").read_text(),
            tmp_path,
            "deploy-1",
            NO_WAIT,
            lambda _: None,
        )
    assert not cfn.list_stacks()["StackSummaries"]
