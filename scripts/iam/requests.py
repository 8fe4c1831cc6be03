"""What AWS authorizes for one API call: the IAM actions, the resource ARNs and the context keys.

For a recorded call (scripts/sandbox/iam_recorder.py) the IAM action is the service prefix and the
operation name (with the few renamings AWS documents below); the resources are the ARNs of the action's
resource types in the Service Authorization Reference (scripts/iam/catalog.py), filled in from the
request's parameters. Rules, each from the Service Authorization Reference unless noted:

- A resource type marked required is authorized against its ARN; when its ARN cannot be built from the
  request the call is reported as unresolved, never guessed.
- An action whose resource types are all optional is authorized against the ARNs the request names
  (for example AddTags on its ResourceArn); when it names none, against "*" (list operations).
- An action with no resource type is authorized against "*".
- A call that passes a role (RoleArn, ExecutionRoleArn, RoleARN, Role) is also authorized for
  iam:PassRole on that role with iam:PassedToService of the calling service
  (IAM User Guide, "Granting a user permissions to pass a role to an AWS service").
- Context keys: aws:SecureTransport is true (the AWS endpoints are HTTPS; the sandbox's moto is
  plain HTTP), cloudformation:TemplateUrl / cloudformation:RoleArn, sagemaker:ModelApprovalStatus,
  iam:PassedToService come from the request, and so do aws:TagKeys (the keys in Tags, or TagKeys of an
  untag call) and aws:RequestTag/<key> (IAM User Guide, "Controlling access during AWS requests").
- sts:GetCallerIdentity needs no permission ("always allowed", STS API reference); the sandbox's own
  sts:AssumeRole (the Lambda runner acting as Lambda) is not a call of the product.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import catalog
from .engine import Context, Request

# Operation names whose IAM action differs (service authorization reference / moto's S3 mapping).
ACTION_NAMES: Mapping[str, str] = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "s3:HeadObject": "s3:GetObject",
    "s3:GetBucketCORS": "s3:GetBucketCORS",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}
NO_PERMISSION: frozenset[str] = frozenset({"sts:GetCallerIdentity"})
SANDBOX_ONLY: frozenset[str] = frozenset({"sts:AssumeRole"})
PASSED_ROLE_PARAMETERS = ("RoleArn", "ExecutionRoleArn", "RoleARN", "Role")
SERVICE_PRINCIPALS = {
    "sagemaker": "sagemaker.amazonaws.com",
    "cloudformation": "cloudformation.amazonaws.com",
    "lambda": "lambda.amazonaws.com",
    "events": "events.amazonaws.com",
}
_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


class UnresolvedCall(LookupError):
    """A required resource of the action cannot be built from the request: extend the resolvers."""


@dataclass(frozen=True)
class Lookups:
    """Facts the request alone does not carry, looked up in the (emulated) account."""

    secret_arn: Callable[[str], str] = lambda name: name
    stack_of_change_set: Callable[[str], str] = lambda arn: ""
    stack_arn: Callable[[str], str] = lambda name: name
    # A stack's tags, which a policy may read as aws:ResourceTag/<key> (the check-in's own project stack).
    stack_tags: Callable[[str], Mapping[str, str]] = lambda arn: {}


@dataclass(frozen=True)
class Authorization:
    """Everything AWS checks for one call: one Request per (action, resource)."""

    requests: tuple[Request, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def iam_action(service: str, operation: str) -> str:
    prefix = {"monitoring": "cloudwatch", "runtime.sagemaker": "sagemaker"}.get(service, service)
    name = f"{prefix}:{operation}"
    return ACTION_NAMES.get(name, name)


def _flat(params: Mapping[str, Any]) -> dict[str, str]:
    """Top-level string parameters, plus the last path segment under its own name for REST calls."""
    return {k: str(v) for k, v in params.items() if isinstance(v, str | int) and not isinstance(v, bool)}


def _fill(
    arn_format: str, values: Mapping[str, str], partition: str, region: str, account: str
) -> str | None:
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        fixed = {"Partition": partition, "Region": region, "Account": account}
        if name in fixed:
            return fixed[name]
        if name in values:
            return values[name]
        missing = True
        return ""

    filled = _PLACEHOLDER.sub(replace, arn_format)
    return None if missing else filled


def _arn_params(params: Mapping[str, str], resource_type: catalog.ResourceType) -> list[str]:
    """Parameters that are already ARNs of `resource_type` (e.g. ModelPackageName given as an ARN)."""
    return [
        v
        for v in params.values()
        if v.startswith("arn:") and catalog.arn_pattern_matches_type(v, resource_type)
    ]


def resources_for(
    action: str, params: Mapping[str, Any], account: str, region: str, lookups: Lookups, s3_resource: str = ""
) -> list[str]:
    """The ARNs `action` is authorized against for a request with `params` (see the module rules)."""
    types = catalog.resource_types(action)
    if not types:
        return ["*"]
    flat = _flat(params)
    prefix = action.split(":", 1)[0]
    if prefix == "s3" and s3_resource:
        bucket_and_key = s3_resource.split(":::", 1)[1]
        bucket, _, key = bucket_and_key.partition("/")
        flat.setdefault("BucketName", bucket)
        if key:
            flat.setdefault("ObjectName", key)
    if prefix == "secretsmanager" and "SecretId" in flat:
        flat["SecretId"] = lookups.secret_arn(flat["SecretId"]).split(":secret:", 1)[-1]
    if prefix == "cloudformation":
        stack = flat.get("StackName", "")
        if not stack and flat.get("ChangeSetName", "").startswith("arn:"):
            stack = lookups.stack_of_change_set(flat["ChangeSetName"])
        if stack:
            arn = stack if stack.startswith("arn:") else lookups.stack_arn(stack)
            if arn.startswith("arn:"):
                flat["StackName"], flat["Id"] = arn.split(":stack/", 1)[1].split("/", 1)
            else:
                flat["StackName"], flat["Id"] = stack, "00000000-0000-0000-0000-000000000000"
    found: list[str] = []
    unresolved: list[str] = []
    for resource_type in types:
        direct = _arn_params(flat, resource_type)
        filled = direct[0] if direct else _fill(resource_type.arn_format, flat, "aws", region, account)
        if filled is not None:
            if filled not in found:
                found.append(filled)
        elif resource_type.required:
            unresolved.append(resource_type.name)
    if unresolved:
        raise UnresolvedCall(
            f"{action}: cannot build the ARN of required resource type(s) {', '.join(unresolved)} from "
            f"parameters {sorted(flat)}"
        )
    return found or ["*"]


def context_for(action: str, params: Mapping[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {"aws:SecureTransport": True}
    flat = _flat(params)
    if action.startswith("cloudformation:"):
        if "TemplateURL" in flat:
            context["cloudformation:TemplateUrl"] = flat["TemplateURL"]
        if "RoleARN" in flat:
            context["cloudformation:RoleArn"] = flat["RoleARN"]
    if (
        action in ("sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage")
        and "ModelApprovalStatus" in flat
    ):
        context["sagemaker:ModelApprovalStatus"] = flat["ModelApprovalStatus"]
    tags = params.get("Tags")
    if isinstance(tags, list) and all(isinstance(t, Mapping) and "Key" in t for t in tags):
        context["aws:TagKeys"] = [str(t["Key"]) for t in tags]
        for tag in tags:
            context[f"aws:RequestTag/{tag['Key']}"] = str(tag.get("Value", ""))
    untagged = params.get("TagKeys")
    if isinstance(untagged, list):
        context["aws:TagKeys"] = [str(k) for k in untagged]
    return context


def authorize(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    account: str,
    region: str,
    lookups: Lookups | None = None,
    s3_resource: str = "",
) -> Authorization:
    """The requests AWS evaluates for one call (empty for calls that need no permission)."""
    lookups = lookups or Lookups()
    action = iam_action(service, operation)
    if action in NO_PERMISSION or action in SANDBOX_ONLY:
        return Authorization((), (f"{action}: no permission needed",))
    if not catalog.action_exists(action):
        raise UnresolvedCall(
            f"{action} is not an action in the Service Authorization Reference: map it in ACTION_NAMES"
        )
    action = catalog.canonical(action)
    context: Context = context_for(action, params)
    requests = []
    for arn in resources_for(action, params, account, region, lookups, s3_resource):
        tags = lookups.stack_tags(arn) if action.startswith("cloudformation:") and ":stack/" in arn else {}
        resource_tags = {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
        requests.append(Request(action, arn, {**context, **resource_tags}))
    flat = _flat(params)
    for name in PASSED_ROLE_PARAMETERS:
        role = flat.get(name, "")
        if role.startswith("arn:") and ":role/" in role:
            passed: Context = {
                "aws:SecureTransport": True,
                "iam:PassedToService": SERVICE_PRINCIPALS.get(service, f"{service}.amazonaws.com"),
            }
            requests.append(Request("iam:PassRole", role, passed))
    return Authorization(tuple(requests))
