"""EventBridge delivery of SageMaker "Model Package State Change" events to Lambda targets.

Reproduces: the event SageMaker emits when a model package's approval changes (source aws.sagemaker,
detail-type "SageMaker Model Package State Change", account, region, resources [package ARN], time,
`detail` = the package's description with times as epoch milliseconds); matching it against every
enabled rule's EventPattern on the bus with moto's EventBridge matcher (exact values, nested fields,
arrays, every operator, `$or`), after refusing what PutRule refuses (unknown operators, which moto's
matcher would let match) — moto's put_events cannot reach Lambda targets without Docker; the target's
`Input` / `InputPath`; the permission check EventBridge depends on (the function's resource policy must allow
events.amazonaws.com, for that rule when it names a SourceArn); the Lambda target run by the local
runner with the event.

Leaves out: InputTransformer, dead-letter queues, retries and asynchronous delivery (targets run
one after another before `emit` returns), non-Lambda targets (reported as not delivered), archives,
cross-account buses, and the duplicate events SageMaker may send (consumers must tolerate them anyway).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops_common import contract
from moto.events.exceptions import InvalidEventPatternException
from moto.events.models import EventPattern, EventPatternParser

from .exceptions import EventPatternError
from .lambda_runner import Invocation, LambdaRunner

# --- pattern matching -------------------------------------------------------------------------------

# EventBridge's comparison operators (EventBridge User Guide, "Creating event patterns": content
# filtering); PutRule refuses any other name, so an unknown one is an error here, never a silent match.
OPERATORS = frozenset(
    {"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists", "cidr", "wildcard"}
)


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether `event` matches an EventBridge `pattern`, by moto's own EventBridge pattern matcher.

    The pattern is first checked as PutRule checks it (moto's parser: every value an object or a
    non-empty array) and for unknown operators, which moto's matcher would silently treat as a match.
    """
    _check_operators(pattern)
    try:
        parsed = EventPatternParser(json.dumps(pattern)).parse()
    except InvalidEventPatternException as error:
        raise EventPatternError(f"invalid event pattern: {error.message}") from None
    return bool(EventPattern(None, parsed).matches_event(dict(event)))  # type: ignore[arg-type]


def _check_operators(node: Any) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$or":
                for alternative in value:
                    _check_operators(alternative)
            elif isinstance(value, list):
                for rule in value:
                    if isinstance(rule, Mapping):
                        _check_rule(rule)
            else:
                _check_operators(value)


def _check_rule(rule: Mapping[str, Any]) -> None:
    for operator, argument in rule.items():
        if operator not in OPERATORS:
            raise EventPatternError(f"EventBridge has no operator {operator!r} (known: {sorted(OPERATORS)})")
        if isinstance(argument, Mapping):
            _check_rule(argument)


# --- the event --------------------------------------------------------------------------------------


def _epoch_millis(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, Mapping):
        return {k: _epoch_millis(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_epoch_millis(v) for v in value]
    return value


def model_package_event(
    description: Mapping[str, Any], *, account: str, region: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The "SageMaker Model Package State Change" event for a DescribeModelPackage response."""
    detail = {k: _epoch_millis(v) for k, v in description.items() if k != "ResponseMetadata"}
    moment = now or dt.datetime.now(dt.UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": contract.EVENT_DETAIL_TYPE,
        "source": contract.EVENT_SOURCE,
        "account": account,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [description["ModelPackageArn"]],
        "detail": detail,
    }


# --- delivery ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One matching rule target: the Lambda run, or why nothing ran."""

    rule: str
    target_id: str
    target_arn: str
    invocation: Invocation | None = None
    not_delivered: str | None = None

    @property
    def ok(self) -> bool:
        return self.invocation is not None and self.invocation.ok


@dataclass(frozen=True)
class Emission:
    event: Mapping[str, Any]
    matched_rules: tuple[str, ...]
    deliveries: tuple[Delivery, ...]


def _target_input(target: Mapping[str, Any], event: Mapping[str, Any]) -> Any:
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        value: Any = event
        for part in str(target["InputPath"]).removeprefix("$").strip(".").split("."):
            if part:
                value = value[part]
        return value
    return event


def _allows_events(lambda_client: Any, function_arn: str, rule_arn: str) -> bool:
    try:
        policy = json.loads(lambda_client.get_policy(FunctionName=function_arn)["Policy"])
    except lambda_client.exceptions.ResourceNotFoundException:
        return False
    for statement in policy.get("Statement", []):
        principal = statement.get("Principal", {})
        service = principal.get("Service") if isinstance(principal, Mapping) else principal
        if statement.get("Effect") != "Allow" or service != "events.amazonaws.com":
            continue
        source = statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
        if source is None or fnmatch.fnmatchcase(rule_arn, source):
            return True
    return False


@dataclass
class EventBridge:
    """Delivers events to the Lambda targets of matching rules in (moto's) EventBridge."""

    events_client: Any
    lambda_client: Any
    runner: LambdaRunner
    bus: str = "default"

    def emit(self, event: Mapping[str, Any]) -> Emission:
        matched: list[str] = []
        deliveries: list[Delivery] = []
        paginator = self.events_client.get_paginator("list_rules")
        for page in paginator.paginate(EventBusName=self.bus):
            for rule in page["Rules"]:
                if rule.get("State") != "ENABLED" or not rule.get("EventPattern"):
                    continue
                if not matches(json.loads(rule["EventPattern"]), event):
                    continue
                matched.append(rule["Name"])
                deliveries.extend(self._deliver(rule, event))
        return Emission(event, tuple(matched), tuple(deliveries))

    def _deliver(self, rule: Mapping[str, Any], event: Mapping[str, Any]) -> list[Delivery]:
        targets = self.events_client.list_targets_by_rule(Rule=rule["Name"], EventBusName=self.bus)["Targets"]
        out: list[Delivery] = []
        for target in targets:
            arn = target["Arn"]
            if ":lambda:" not in arn:
                out.append(Delivery(rule["Name"], target["Id"], arn,
                                    not_delivered="only Lambda targets are emulated"))
            elif "InputTransformer" in target:
                out.append(Delivery(rule["Name"], target["Id"], arn,
                                    not_delivered="InputTransformer is not emulated"))
            elif not _allows_events(self.lambda_client, arn, rule["Arn"]):
                out.append(Delivery(
                    rule["Name"], target["Id"], arn,
                    not_delivered=f"the function's resource policy does not allow events.amazonaws.com to "
                    f"invoke it from rule {rule['Name']}: EventBridge would fail to invoke it (add an "
                    "AWS::Lambda::Permission with SourceArn = the rule's ARN)",
                ))
            else:
                out.append(Delivery(rule["Name"], target["Id"], arn,
                                    invocation=self.runner.invoke(arn, _target_input(target, event))))
        return out


def account_of(arn: str) -> str:
    return arn.split(":")[4]


def region_of(arn: str) -> str:
    return arn.split(":")[3]


def emit_model_package_change(sagemaker_client: Any, bridge: EventBridge, package_arn: str) -> Emission:
    """Emit the state change event SageMaker sends for the package as it is now."""
    description = sagemaker_client.describe_model_package(ModelPackageName=package_arn)
    event = model_package_event(description, account=account_of(package_arn), region=region_of(package_arn))
    return bridge.emit(event)


def set_approval(
    sagemaker_client: Any, bridge: EventBridge, package_arn: str, status: str, description: str = ""
) -> Emission:
    """Change a model package's approval status (as a user in Studio would) and emit SageMaker's event."""
    if status not in (contract.APPROVED, contract.REJECTED, contract.PENDING):
        raise ValueError(
            f"approval status {status!r} is not one of {contract.APPROVED}, {contract.REJECTED}, "
            f"{contract.PENDING}"
        )
    update: dict[str, Any] = {"ModelPackageArn": package_arn, "ModelApprovalStatus": status}
    if description:
        update["ApprovalDescription"] = description
    # moto 5.2 replaces CustomerMetadataProperties with the request's (none) on every update; AWS keeps
    # them. Sending the current ones back is a no-op in AWS and keeps moto's package intact.
    current = sagemaker_client.describe_model_package(ModelPackageName=package_arn)
    if current.get("CustomerMetadataProperties"):
        update["CustomerMetadataProperties"] = current["CustomerMetadataProperties"]
    sagemaker_client.update_model_package(**update)
    return emit_model_package_change(sagemaker_client, bridge, package_arn)
