"""Decide what a model package state change means and start the deploy pipeline for it.

Approved: deploy that package. Rejected: when the rejected package is the one live in production, deploy
the previous Approved version (a rollback, through staging and the production gate as usual); a rejected
package that is not live changes nothing.

The pipeline is started with the deploy repository's own pipeline trigger token (the seed check-in
created it and stored it in the project's secret), never with the platform's GitLab token.

Exactly one pipeline per state change: SageMaker may deliver one change several times, Lambda retries
failed invocations, and the dead-letter re-drive sends it again. Each change has a key (the pipeline
name, which the deploy repository's `workflow:name` takes from a variable we pass), looked up with a
read-only token before the one POST that starts the pipeline; that POST is never re-sent automatically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlops_common import contract
from mlops_common.errors import ConfigError, MalformedEvent, NoRollbackTarget
from mlops_common.gitlab_api import GitLabApi
from mlops_common.secrets import StoredTrigger

from pipeline_trigger.config import TriggerConfig

logger = logging.getLogger(__name__)


MAX_ROLLBACK_LOOKUPS = 50  # versions looked at below the rejected one when searching the previous approval


@dataclass(frozen=True)
class StateChange:
    group: str
    arn: str
    status: str
    version: str
    changed_at: str  # detail LastModifiedTime (the same in every copy of one change), else the event time

    def pipeline_name(self, action: str) -> str:
        """The idempotency key: one state change of one package = one pipeline with this name."""
        return f"{action} {self.group} v{self.version or '?'} ({self.status} at {self.changed_at})"


@dataclass(frozen=True)
class Deployer:
    """What starting a pipeline needs: a client without private token that runs the trigger, one with
    the read-only token that lists pipelines, and the stored trigger token."""

    gitlab: GitLabApi
    reader: GitLabApi
    trigger: StoredTrigger


class Registry(Protocol):
    """The model registry and the production deploy stack, as the rollback needs them."""

    def live_in_production(self) -> str:
        """The model package ARN the production stack serves; "" when there is none."""
        ...

    def approval_status(self, arn: str) -> str | None:
        """The package's ModelApprovalStatus; None when there is no such package."""
        ...


@dataclass(frozen=True)
class Deployment:
    arn: str
    name: str
    variables: dict[str, str]


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
        changed_at=str(detail.get("LastModifiedTime") or event.get("time") or ""),
    )


def check_trigger(trigger: StoredTrigger, cfg: TriggerConfig) -> None:
    """The stored token must belong to this project's deploy repository on this GitLab."""
    if trigger.project_id != cfg.deploy_project_id or trigger.gitlab_url.rstrip("/") != cfg.gitlab_url:
        raise ConfigError(
            f"the deploy trigger secret is for project {trigger.project_id} on {trigger.gitlab_url}, not "
            f"{cfg.deploy_project_id} on {cfg.gitlab_url}: update the SageMaker project so the seed check-in "
            "writes it again"
        )


def previous_approved(change: StateChange, registry: Registry) -> str:
    """The newest Approved version below the rejected one ("" when there is none)."""
    base, _, version = change.arn.rpartition("/")
    if not version.isdigit():
        raise MalformedEvent(f"model package ARN {change.arn!r} does not end with its version")
    for older in range(int(version) - 1, max(0, int(version) - 1 - MAX_ROLLBACK_LOOKUPS), -1):
        candidate = f"{base}/{older}"
        if registry.approval_status(candidate) == contract.APPROVED:
            return candidate
    return ""


def plan(change: StateChange, registry: Registry | None) -> Deployment | str:
    """The deployment this change asks for, or why it asks for none."""
    variables = {
        contract.PIPELINE_VAR_MODEL_PACKAGE_GROUP: change.group,
        contract.PIPELINE_VAR_APPROVAL_STATUS: change.status,
    }
    if change.status == contract.APPROVED:
        name = change.pipeline_name("deploy")
        variables[contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] = change.arn
        variables[contract.PIPELINE_VAR_PIPELINE_NAME] = name
        return Deployment(change.arn, name, variables)
    if change.status != contract.REJECTED or registry is None:
        return f"status {change.status}"
    live = registry.live_in_production()
    if live != change.arn:
        return f"rejected package is not live in production (live: {live or 'nothing'})"
    previous = previous_approved(change, registry)
    if not previous:
        raise NoRollbackTarget(
            f"{change.arn} was rejected while live in production, and no earlier version is Approved: "
            "approve the version to go back to, or take the endpoint down by hand"
        )
    name = change.pipeline_name("rollback")
    variables[contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] = previous
    variables[contract.PIPELINE_VAR_PIPELINE_NAME] = name
    variables[contract.PIPELINE_VAR_DEPLOY_REASON] = (
        f"rollback: {change.arn} was rejected while live in production; redeploying {previous}"
    )
    return Deployment(previous, name, variables)


def handle(
    connect: Callable[[], Deployer],
    cfg: TriggerConfig,
    event: object,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Start the deploy pipeline a change of our group asks for; ignore (and say why) anything else.

    `connect` is called only when a pipeline is due, so ignored events never read the token or call GitLab.
    """
    change = parse_event(event)
    if change.group != cfg.model_package_group:
        logger.info(
            "ignored: %s belongs to group %s, not %s", change.arn, change.group, cfg.model_package_group
        )
        return {"status": "ignored", "reason": "other model package group", "model_package_arn": change.arn}
    wanted = plan(change, registry)
    if isinstance(wanted, str):
        logger.info("not deploying after %s became %s: %s", change.arn, change.status, wanted)
        return {"status": "ignored", "reason": wanted, "model_package_arn": change.arn}
    deployer = connect()
    check_trigger(deployer.trigger, cfg)
    if not deployer.trigger.read_token:
        raise ConfigError(
            "the deploy trigger secret has no read token to look up pipelines already started: update the "
            "SageMaker project so the seed check-in writes it again"
        )
    started = deployer.reader.pipelines_named(cfg.deploy_project_id, wanted.name)
    if started:
        logger.info("already started for this change: pipeline %s (%s)", started[0].id, wanted.name)
        return {
            "status": "already started",
            "pipeline_id": started[0].id,
            "web_url": started[0].web_url,
            "model_package_arn": wanted.arn,
        }
    pipeline = deployer.gitlab.run_trigger(
        cfg.deploy_project_id, cfg.deploy_ref, deployer.trigger.token, wanted.variables
    )
    logger.info("started deploy pipeline %s for %s: %s", pipeline.id, wanted.arn, pipeline.web_url)
    return {
        "status": "started",
        "pipeline_id": pipeline.id,
        "web_url": pipeline.web_url,
        "model_package_arn": wanted.arn,
    }
