"""Project delete: the deploy stacks the project's CI created are deleted or retained, and always listed.

The model-deploy CI creates one CloudFormation stack per stage (contract.deploy_stack_name) without a
service role, so DeleteStack acts with the caller's session: the check-in's role. CloudFormation deletes
that role right after the custom resource answers, so `delete` waits for the stacks to be gone (or
answers FAILED at the deadline, and the user retries the project deletion) instead of answering early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from mlops_common import contract
from mlops_common.config import Settings
from mlops_common.errors import ConfigError, MlopsError

logger = logging.getLogger(__name__)

DELETE, RETAIN = "delete", "retain"
POLICIES = (DELETE, RETAIN)
PROPERTY = "DeployStackDeletionPolicy"
POLL_SECONDS = 10.0
# Outputs of seedcode/model-deploy/endpoint-config-template.yml naming what bills.
BILLING_OUTPUTS = ("EndpointName", "ModelName")
GONE = "DELETE_COMPLETE"


class DeployStacksNotDeleted(MlopsError):
    """A deploy stack is still there after Delete: the project deletion must be retried."""


@dataclass(frozen=True)
class DeployStack:
    name: str
    stack_id: str
    status: str
    reason: str
    billing: tuple[str, ...]  # "EndpointName=...", "ModelName=..."

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.billing) or 'no endpoint'})"

    @property
    def endpoint(self) -> str:
        return next((b.split("=", 1)[1] for b in self.billing if b.startswith("EndpointName=")), "")


@dataclass(frozen=True)
class Result:
    """What happened to the deploy stacks: a one-line summary for the log and the answer's reason."""

    policy: str
    deleted: tuple[str, ...]
    retained: tuple[DeployStack, ...]

    def summary(self) -> str:
        """Short enough for CloudFormation's reason (endpoints only); `details` is the full log line."""
        if self.retained:
            listed = "; ".join(f"{s.name} ({s.endpoint or 'no endpoint'})" for s in self.retained)
            return f"deploy stacks retained, still billing: {listed}"
        if self.deleted:
            return f"deploy stacks deleted: {', '.join(self.deleted)}"
        return "no deploy stacks to delete"

    def details(self) -> str:
        if not self.retained:
            return self.summary()
        listed = "; ".join(s.describe() for s in self.retained)
        return (
            f"deploy stacks retained, still billing: {listed}: delete them with "
            "`aws cloudformation delete-stack --stack-name NAME` when no longer needed"
        )


def policy_from_properties(props: Mapping[str, object]) -> str:
    """The resource property DeployStackDeletionPolicy (delete by default)."""
    return Settings(props, "resource property").choice(PROPERTY, POLICIES, DELETE)


def stack_names(project_name: str, project_id: str) -> tuple[str, ...]:
    return tuple(contract.deploy_stack_name(project_name, project_id, s) for s in contract.STAGES)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def describe(cfn: Any, name_or_id: str) -> DeployStack | None:
    """The stack, or None when there is none (DescribeStacks answers ValidationError for a missing name)."""
    try:
        stacks = cfn.describe_stacks(StackName=name_or_id)["Stacks"]
    except ClientError as exc:
        if _code(exc) == "ValidationError":
            return None
        raise MlopsError(
            f"cannot describe stack {name_or_id} ({_code(exc)}): "
            "check the seed check-in role's cloudformation:DescribeStacks permission"
        ) from None
    except BotoCoreError as exc:
        raise MlopsError(f"cannot describe stack {name_or_id}: {type(exc).__name__}") from None
    if not stacks:
        return None
    stack = stacks[0]
    outputs = {o.get("OutputKey"): o.get("OutputValue") for o in stack.get("Outputs", [])}
    return DeployStack(
        name=str(stack["StackName"]),
        stack_id=str(stack["StackId"]),
        status=str(stack["StackStatus"]),
        reason=str(stack.get("StackStatusReason", "")),
        billing=tuple(f"{k}={outputs[k]}" for k in BILLING_OUTPUTS if outputs.get(k)),
    )


def _failed_resources(cfn: Any, stack: DeployStack) -> str:
    """The resources whose deletion failed and why, from the stack's events (the newest first)."""
    try:
        events = cfn.describe_stack_events(StackName=stack.stack_id).get("StackEvents", [])
    except (ClientError, BotoCoreError):
        return stack.reason or "reason unknown"
    failed = [
        f"{e.get('LogicalResourceId')} ({e.get('ResourceType')}): {e.get('ResourceStatusReason', '')}"
        for e in events
        if e.get("ResourceStatus") == "DELETE_FAILED" and e.get("StackId") != e.get("PhysicalResourceId")
    ]
    return "; ".join(dict.fromkeys(failed)) or stack.reason or "reason unknown"


def apply(
    cfn: Any,
    project_name: str,
    project_id: str,
    policy: str,
    deadline: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
) -> Result:
    """Delete (and wait for) or retain this project's deploy stacks; raise if one is still there."""
    if policy not in POLICIES:
        raise ConfigError(f"{PROPERTY} is {policy!r}: expected one of {', '.join(POLICIES)}")
    found = [s for s in (describe(cfn, n) for n in stack_names(project_name, project_id)) if s]
    found = [s for s in found if s.status != GONE]
    if policy == RETAIN:
        return Result(policy, (), tuple(found))
    for stack in found:
        if stack.status == "DELETE_IN_PROGRESS":
            continue
        try:
            cfn.delete_stack(StackName=stack.stack_id)
        except ClientError as exc:
            raise DeployStacksNotDeleted(
                f"deploy stack {stack.name} is {stack.status} and could not be deleted ({_code(exc)}): "
                "wait for its CI job to finish, then delete the project again"
            ) from None
        except BotoCoreError as exc:
            raise DeployStacksNotDeleted(
                f"deploy stack {stack.name} could not be deleted ({type(exc).__name__}): "
                "delete the project again"
            ) from None
        logger.info("deleting deploy stack %s (%s)", stack.describe(), stack.status)
    pending = {s.stack_id: s for s in found}
    deleted: list[str] = []
    while pending:
        for stack_id, before in list(pending.items()):
            now = describe(cfn, stack_id)
            if now is None or now.status == GONE:
                deleted.append(before.name)
                del pending[stack_id]
            elif now.status == "DELETE_FAILED":
                raise DeployStacksNotDeleted(
                    f"deploy stack {now.name} failed to delete: {_failed_resources(cfn, now)}: fix or "
                    "remove that resource, then delete the project again"
                )
        if pending and clock() + poll_seconds > deadline:
            names = ", ".join(s.describe() for s in pending.values())
            raise DeployStacksNotDeleted(
                f"deploy stacks still deleting at the deadline: {names}: "
                "delete the project again once they are gone"
            )
        if pending:
            sleep(poll_seconds)
    return Result(policy, tuple(deleted), ())


# Seconds of the Lambda's remaining time kept for the repositories' policy and the answer itself.
RESERVE_SECONDS = 90.0
# A Delete sent while the project stack is in one of these replaces the resource (an Update renamed the
# repositories): the project lives on, and so do its deploy stacks.
CLEANUP = ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")


def on_delete(
    cfn: Any, event: Mapping[str, Any], remaining_seconds: float, clock: Callable[[], float] = time.monotonic
) -> str:
    """The custom resource's Delete, deploy-stack part: apply the policy; the summary to report."""
    props = event.get("ResourceProperties", {})
    policy = policy_from_properties(props)
    try:
        project_name = Settings(props, "resource property").required("ProjectName")
        project_id = contract.check_project_id(Settings(props, "resource property").required("ProjectId"))
    except (ConfigError, ValueError) as exc:
        logger.warning("deploy stacks not looked up, the properties never passed validation: %s", exc)
        return "no deploy stacks to delete"
    project_stack = describe(cfn, str(event.get("StackId", ""))) if event.get("StackId") else None
    if project_stack is not None and project_stack.status in CLEANUP:
        logger.info("resource replaced by an update (%s): deploy stacks kept", project_stack.status)
        return "resource replaced: deploy stacks kept"
    result = apply(cfn, project_name, project_id, policy, clock() + remaining_seconds - RESERVE_SECONDS)
    (logger.warning if result.retained else logger.info)("%s", result.details())
    return result.summary()
