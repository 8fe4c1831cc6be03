"""Decide what a model package state change means and start the deploy pipeline for approvals.

The pipeline is started with the deploy repository's own pipeline trigger token (the seed check-in
created it and stored it in the project's secret), never with the platform's GitLab token.

Duplicates: SageMaker may deliver one change several times, and Lambda retries failed invocations,
so the same approval can start a second pipeline. That is harmless: deploying the package that is
already deployed changes nothing. Starting a pipeline is one POST, so no lookup can go stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mlops_common import contract
from mlops_common.errors import ConfigError, MalformedEvent
from mlops_common.gitlab_client import GitLab
from mlops_common.secrets import StoredTrigger

from pipeline_trigger.config import TriggerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateChange:
    group: str
    arn: str
    status: str
    version: str


def parse_event(event: object) -> StateChange:
    """The fields we use from a "SageMaker Model Package State Change" event; MalformedEvent otherwise."""
    if not isinstance(event, Mapping):
        raise MalformedEvent(f"event must be a JSON object, got {type(event).__name__}")
    source, detail_type = event.get("source"), event.get("detail-type")
    if source != contract.EVENT_SOURCE or detail_type != contract.EVENT_DETAIL_TYPE:
        raise MalformedEvent(
            f"unexpected event {source!r}/{detail_type!r}: expected {contract.EVENT_SOURCE!r}/"
            f"{contract.EVENT_DETAIL_TYPE!r}; check the EventBridge rule's pattern"
        )
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEvent("event has no 'detail' object")
    fields: dict[str, str] = {}
    for name in ("ModelPackageGroupName", "ModelPackageArn", "ModelApprovalStatus"):
        value = detail.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedEvent(f"event detail lacks {name}")
        fields[name] = value
    if not fields["ModelPackageArn"].startswith("arn:") or ":model-package/" not in fields["ModelPackageArn"]:
        raise MalformedEvent(
            f"event detail ModelPackageArn {fields['ModelPackageArn']!r} is not a model package ARN"
        )
    return StateChange(
        group=fields["ModelPackageGroupName"],
        arn=fields["ModelPackageArn"],
        status=fields["ModelApprovalStatus"],
        version=str(detail.get("ModelPackageVersion", "")),
    )


def check_trigger(trigger: StoredTrigger, cfg: TriggerConfig) -> None:
    """The stored token must belong to this project's deploy repository on this GitLab."""
    if trigger.project_id != cfg.deploy_project_id or trigger.gitlab_url.rstrip("/") != cfg.gitlab_url:
        raise ConfigError(
            f"the deploy trigger secret is for project {trigger.project_id} on {trigger.gitlab_url}, not "
            f"{cfg.deploy_project_id} on {cfg.gitlab_url}: update the SageMaker project so the seed check-in "
            "writes it again"
        )


def handle(
    connect: Callable[[], tuple[GitLab, StoredTrigger]], cfg: TriggerConfig, event: object
) -> dict[str, Any]:
    """Start the deploy pipeline for an approval of our group; ignore (and say why) anything else.

    `connect` is called only for an approval, so ignored events never read the token or call GitLab.
    """
    change = parse_event(event)
    if change.group != cfg.model_package_group:
        logger.info(
            "ignored: %s belongs to group %s, not %s", change.arn, change.group, cfg.model_package_group
        )
        return {"status": "ignored", "reason": "other model package group", "model_package_arn": change.arn}
    if change.status != contract.APPROVED:
        logger.info(
            "not deploying %s: its status is %s (only %s deploys)",
            change.arn,
            change.status,
            contract.APPROVED,
        )
        return {"status": "ignored", "reason": f"status {change.status}", "model_package_arn": change.arn}
    gitlab, trigger = connect()
    check_trigger(trigger, cfg)
    pipeline = gitlab.run_trigger(
        cfg.deploy_project_id,
        cfg.deploy_ref,
        trigger.token,
        {
            contract.PIPELINE_VAR_MODEL_PACKAGE_ARN: change.arn,
            contract.PIPELINE_VAR_MODEL_PACKAGE_GROUP: change.group,
            contract.PIPELINE_VAR_APPROVAL_STATUS: change.status,
        },
    )
    logger.info("started deploy pipeline %s for %s: %s", pipeline.id, change.arn, pipeline.web_url)
    return {
        "status": "started",
        "pipeline_id": pipeline.id,
        "web_url": pipeline.web_url,
        "model_package_arn": change.arn,
    }
