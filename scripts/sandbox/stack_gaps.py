"""Resources moto's CloudFormation silently skips, created through the service APIs instead.

Reproduces: `AWS::SageMaker::ModelPackageGroup` (name, description, tags) and
`AWS::SecretsManager::Secret` (name, description, SecretString when it resolves, tags) of a created
stack, so the project's model package group exists as it would in AWS. Their physical ids (group name,
secret ARN) are returned for the custom resource bridge's `extra_refs`.

Resources moto lists without a physical id but does create (AWS::Lambda::Permission) are only reported.
`AWS::IAM::AccessKey` secrets, which moto never reveals, come from a key issued through IAM.
A `GenerateSecretString` with `SecretStringTemplate` and `GenerateStringKey` gets the template's JSON
with a random value (letters and digits, `PasswordLength` long) under that key, as Secrets Manager
generates it (CloudFormation Template Reference, AWS::SecretsManager::Secret GenerateSecretString).
Leaves out: deleting them with the stack (moto state is thrown away with the sandbox), resource
policies, KMS keys, the other GenerateSecretString options, and every other skipped type (listed as
not created).
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .cfn_template import DeployedStack, load_stack
from .exceptions import TemplateResolutionError


@dataclass(frozen=True)
class Gaps:
    created: Mapping[str, str]  # logical id -> physical id
    not_created: Mapping[str, str]  # logical id -> why


def _tags(properties: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"Key": str(t["Key"]), "Value": str(t["Value"])} for t in properties.get("Tags", [])]


def _model_package_group(clients: Callable[[str], Any], props: Mapping[str, Any]) -> str:
    sm = clients("sagemaker")
    name = str(props["ModelPackageGroupName"])
    request: dict[str, Any] = {"ModelPackageGroupName": name, "Tags": _tags(props)}
    if props.get("ModelPackageGroupDescription"):
        request["ModelPackageGroupDescription"] = str(props["ModelPackageGroupDescription"])
    try:
        sm.create_model_package_group(**request)
    except sm.exceptions.ClientError as exc:
        if "already exists" not in str(exc).lower():
            raise
    return name


def _secret(clients: Callable[[str], Any], props: Mapping[str, Any]) -> str:
    sm = clients("secretsmanager")
    request: dict[str, Any] = {"Name": str(props["Name"]), "Tags": _tags(props)}
    if props.get("Description"):
        request["Description"] = str(props["Description"])
    if props.get("SecretString") is not None:
        request["SecretString"] = str(props["SecretString"])
    elif isinstance(props.get("GenerateSecretString"), Mapping):
        request["SecretString"] = _generated(props["GenerateSecretString"])
    return str(sm.create_secret(**request)["ARN"])


def _generated(spec: Mapping[str, Any]) -> str:
    alphabet = string.ascii_letters + string.digits
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    template = spec.get("SecretStringTemplate")
    if template is None:
        return value
    document = json.loads(str(template))
    document[str(spec["GenerateStringKey"])] = value
    return json.dumps(document)


_CREATORS: dict[str, Callable[[Callable[[str], Any], Mapping[str, Any]], str]] = {
    "AWS::SageMaker::ModelPackageGroup": _model_package_group,
    "AWS::SecretsManager::Secret": _secret,
}


def _issue_access_keys(stack: DeployedStack, clients: Callable[[str], Any]) -> None:
    """Give each AWS::IAM::AccessKey a secret the resolver can use.

    moto creates the key but never reveals its secret (AWS reveals it only to CloudFormation, as
    `GetAtt Key.SecretAccessKey`), so the sandbox issues the user a key through IAM and resolves the
    resource's Ref and SecretAccessKey to it.
    """
    iam = clients("iam")
    for logical_id, resource in stack.template.get("Resources", {}).items():
        if resource["Type"] != "AWS::IAM::AccessKey" or not stack.created(logical_id):
            continue
        user = str(stack.resolver.resolve(resource["Properties"]["UserName"]))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        stack.resolver.overrides[(logical_id, "Ref")] = key["AccessKeyId"]
        stack.resolver.overrides[(logical_id, "SecretAccessKey")] = key["SecretAccessKey"]


def fill_gaps(
    cfn: Any, clients: Callable[[str], Any], region: str, account: str, stack_name: str
) -> Gaps:
    """Create the stack's resources moto skipped (those of the types above); report the others."""
    stack: DeployedStack = load_stack(cfn, clients, region, account, stack_name)
    created: dict[str, str] = {}
    not_created: dict[str, str] = {}
    _issue_access_keys(stack, clients)
    for logical_id, resource in stack.template.get("Resources", {}).items():
        if logical_id in stack.resolver.physical_ids or not stack.created(logical_id):
            continue
        creator = _CREATORS.get(resource["Type"])
        if creator is None:
            not_created[logical_id] = (
                f"moto reports no physical id for this {resource['Type']} (skipped, or created without one "
                "like AWS::Lambda::Permission); the sandbox leaves it alone"
            )
            continue
        try:
            properties = stack.resolver.resolve(resource.get("Properties", {}))
        except TemplateResolutionError as exc:
            not_created[logical_id] = str(exc)
            continue
        created[logical_id] = creator(clients, properties)
        stack.resolver.physical_ids = {**stack.resolver.physical_ids, logical_id: created[logical_id]}
    return Gaps(created, not_created)
