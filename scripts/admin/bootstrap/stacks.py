"""Stacks deployed through change sets, waited on with boto3's CloudFormation waiters."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from scripts.admin.bootstrap.errors import BootstrapError

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]


def template_parameters(body: str) -> dict[str, dict[str, Any]]:
    """The Parameters section of a CloudFormation YAML/JSON template (short-form tags tolerated)."""
    from scripts.admin.cfn_yaml import TemplateFormatError, load_template

    try:
        document = load_template(body)
    except TemplateFormatError as exc:
        raise BootstrapError(f"a bundle template cannot be read ({exc}): check out the bundle again") from exc
    params = document.get("Parameters") or {}
    return {str(k): dict(v or {}) for k, v in params.items()}


def stack_parameters(
    template_body: str, offered: Mapping[str, str], template_name: str
) -> list[dict[str, str]]:
    """The offered values the template declares; fails when a parameter without default has no value."""
    declared = template_parameters(template_body)
    missing = sorted(n for n, spec in declared.items() if "Default" not in spec and not offered.get(n))
    if missing:
        raise BootstrapError(
            f"{template_name} needs parameter(s) {', '.join(missing)} that bootstrap cannot fill"
        )
    return [{"ParameterKey": k, "ParameterValue": offered[k]} for k in sorted(declared) if k in offered]


def stack_outputs(cfn: Any, name: str) -> dict[str, str]:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_status(cfn: Any, name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return str(cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"])
    except ClientError as error:
        if "does not exist" in str(error):  # CloudFormation answers ValidationError for unknown stacks
            return None
        raise


def deploy_stack(
    cfn: Any,
    name: str,
    template: Mapping[str, str],
    parameters: Sequence[Mapping[str, str]],
    log: Callable[[str], None],
    tags: Mapping[str, str] | None = None,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 1800.0,
) -> dict[str, str]:
    """Create or update a stack through a change set (like `aws cloudformation deploy`); returns outputs.

    `template` is {"TemplateBody": ...} or {"TemplateURL": ...}. A change set without changes is success.
    A stack whose first create failed (ROLLBACK_COMPLETE or an empty REVIEW_IN_PROGRESS) is deleted first,
    since CloudFormation cannot update it.
    """
    status = stack_status(cfn, name)
    if status in ("ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"):
        log(f"stack {name} is {status} from an earlier failed create: deleting it first")
        cfn.delete_stack(StackName=name)
        _wait_gone(cfn, name, poll_seconds, timeout_seconds)
        status = None
    elif status and status.endswith("_IN_PROGRESS"):
        raise BootstrapError(f"stack {name} is {status}: wait until it finishes, then run again")
    change_type = "CREATE" if status is None else "UPDATE"
    change_set = f"bootstrap-{int(time.time())}"
    cfn.create_change_set(
        StackName=name,
        ChangeSetName=change_set,
        ChangeSetType=change_type,
        Parameters=list(parameters),
        Capabilities=CAPABILITIES,
        Tags=[{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())],
        **template,
    )
    described = _wait_change_set(cfn, name, change_set, poll_seconds, timeout_seconds)
    if described["Status"] == "FAILED":
        reason = str(described.get("StatusReason", ""))
        cfn.delete_change_set(StackName=name, ChangeSetName=change_set)
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            log(f"stack {name} unchanged")
            return stack_outputs(cfn, name)
        if change_type == "CREATE":
            cfn.delete_stack(StackName=name)
        raise BootstrapError(f"stack {name}: change set failed: {reason}")
    cfn.execute_change_set(StackName=name, ChangeSetName=change_set)
    final = _wait_stack(cfn, name, change_type, poll_seconds, timeout_seconds)
    if final not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise BootstrapError(
            f"stack {name} ended {final}: {_first_failure(cfn, name)}; "
            "see its events in the CloudFormation console"
        )
    log(f"stack {name} {'created' if change_type == 'CREATE' else 'updated'}")
    return stack_outputs(cfn, name)


def _wait(
    cfn: Any, waiter: str, poll: float, timeout: float, on_timeout: str, **params: str
) -> dict[str, Any] | None:
    """Run one of boto3's CloudFormation waiters: None on success, the last response on a failure state."""
    from botocore.exceptions import WaiterError

    config = {"Delay": max(0, round(poll)), "MaxAttempts": max(1, int(timeout // max(poll, 1.0)))}
    try:
        cfn.get_waiter(waiter).wait(WaiterConfig=config, **params)
    except WaiterError as error:
        if "Max attempts exceeded" in str(error):
            raise BootstrapError(on_timeout) from None
        return dict(error.last_response or {})
    return None


def _wait_change_set(cfn: Any, name: str, change_set: str, poll: float, timeout: float) -> dict[str, Any]:
    """The change set once it is created (Status CREATE_COMPLETE) or FAILED (with its StatusReason)."""
    failed = _wait(
        cfn,
        "change_set_create_complete",
        poll,
        timeout,
        f"change set {change_set} of stack {name} did not finish in {timeout:.0f} s",
        StackName=name,
        ChangeSetName=change_set,
    )
    if failed is None:
        return {"Status": "CREATE_COMPLETE"}
    if "Status" not in failed:  # an error response, e.g. the change set vanished
        raise BootstrapError(f"change set {change_set} of stack {name}: {failed.get('Error', failed)}")
    return failed


def _wait_stack(cfn: Any, name: str, change_type: str, poll: float, timeout: float) -> str:
    """The stack's status once its create or update has ended (success or not)."""
    waiter = "stack_create_complete" if change_type == "CREATE" else "stack_update_complete"
    failed = _wait(
        cfn,
        waiter,
        poll,
        timeout,
        f"stack {name} did not finish in {timeout:.0f} s: check the console",
        StackName=name,
    )
    if failed is None:
        return f"{change_type}_COMPLETE"
    stacks = failed.get("Stacks") or [{"StackStatus": "DELETE_COMPLETE"}]  # gone: ValidationError
    return str(stacks[0]["StackStatus"])


def _wait_gone(cfn: Any, name: str, poll: float, timeout: float) -> None:
    failed = _wait(
        cfn,
        "stack_delete_complete",
        poll,
        timeout,
        f"stack {name} was not deleted in {timeout:.0f} s",
        StackName=name,
    )
    if failed is not None:
        status = (failed.get("Stacks") or [{}])[0].get("StackStatus", "not deleted")
        raise BootstrapError(
            f"stack {name} could not be deleted ({status}): delete it in the console, then rerun"
        )


def _first_failure(cfn: Any, name: str) -> str:
    events = cfn.describe_stack_events(StackName=name).get("StackEvents", [])
    for event in reversed(events):
        if str(event.get("ResourceStatus", "")).endswith("_FAILED"):
            return f"{event.get('LogicalResourceId')}: {event.get('ResourceStatusReason', '')}"
    return "no failed resource reported"


def current_stack_parameters(cfn: Any, name: str) -> dict[str, str]:
    """The parameter values a deployed stack runs with; {} when there is no stack."""
    if stack_status(cfn, name) is None:
        return {}
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
