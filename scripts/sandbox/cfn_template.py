"""Read a deployed stack's template and resolve CloudFormation intrinsic functions against it.

Reproduces: the value CloudFormation hands a resource for its properties — `Ref` (parameters, pseudo
parameters, resources' physical ids), `Fn::GetAtt`, `Fn::Sub` (both forms), `Fn::Join`, `Fn::Select`,
`Fn::Split`, `Fn::If` with `Conditions` (`Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`),
`Fn::FindInMap`, `Fn::Base64`, `AWS::NoValue`; YAML short forms (`!Ref`, `!GetAtt a.b`, ...).
moto evaluates templates itself but neither shows custom resources their resolved properties nor waits
for a custom resource before creating what depends on it, so the sandbox resolves them here.

Leaves out: `Fn::ImportValue`, `Fn::GetAZs`, `Fn::Cidr`, `Fn::Transform`/macros, `Rules`, and any
resource attribute not listed in `AwsAttributes` (an unknown one is an error, never a guess).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scripts.admin.cfn_yaml import TemplateFormatError
from scripts.admin.cfn_yaml import load_template as _load_template

from .exceptions import TemplateResolutionError

NO_VALUE = object()  # what `Ref: AWS::NoValue` resolves to: the key is removed
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")

def load_template(body: str | Mapping[str, Any]) -> dict[str, Any]:
    """A template as a dict, from the JSON or YAML text (or the dict boto3 already parsed)."""
    try:
        return _load_template(body)
    except TemplateFormatError as exc:
        raise TemplateResolutionError(f"the stack template cannot be read: {exc}") from exc


# (logical id, resource type, physical id, attribute) -> value
AttributeLookup = Callable[[str, str, str, str], Any]


@dataclass
class Resolver:
    """Resolves intrinsic functions of one deployed stack.

    `physical_ids` maps logical ids to the physical ids CloudFormation (moto) reports; `overrides` maps
    (logical id, attribute) to values known outside moto, such as a custom resource's response Data.
    """

    template: Mapping[str, Any]
    parameters: Mapping[str, str]
    pseudo: Mapping[str, str]
    physical_ids: Mapping[str, str]
    attribute: AttributeLookup
    overrides: dict[tuple[str, str], Any] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic function replaced by its result; NoValue keys dropped."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key, arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise TemplateResolutionError(f"condition {name} is not defined in the template's Conditions")
        return bool(self.resolve(conditions[name]))

    def resource_type(self, logical_id: str) -> str:
        resource = self.template.get("Resources", {}).get(logical_id)
        if resource is None:
            raise TemplateResolutionError(f"resource {logical_id} is not in the template")
        return str(resource["Type"])

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        declared = self.template.get("Parameters", {})
        if name in declared:
            value = self.parameters.get(name, declared[name].get("Default"))
            if value is None:
                raise TemplateResolutionError(f"parameter {name} has no value and no default")
            if str(declared[name].get("Type", "")).startswith(("CommaDelimitedList", "List<")):
                return [] if value == "" else [item.strip() for item in str(value).split(",")]
            return str(value)
        if (name, "Ref") in self.overrides:
            return self.overrides[(name, "Ref")]
        if name in self.physical_ids:
            return self.physical_ids[name]
        raise TemplateResolutionError(
            f"Ref {name}: no such parameter, and the stack has no resource {name} (moto skips some "
            "resource types, e.g. AWS::SecretsManager::Secret; pass such values as parameters)"
        )

    def _get_att(self, arg: Any) -> Any:
        logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
        attribute = self.resolve(attribute)
        if (logical_id, attribute) in self.overrides:
            return self.overrides[(logical_id, attribute)]
        if logical_id not in self.physical_ids:
            raise TemplateResolutionError(f"GetAtt {logical_id}.{attribute}: the stack has no such resource")
        return self.attribute(logical_id, self.resource_type(logical_id), self.physical_ids[logical_id],
                              attribute)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.template.get("Resources", {}):
                return str(self._get_att(name.split(".", 1)))
            value = self._ref(name)
            if isinstance(value, list):
                raise TemplateResolutionError(f"Fn::Sub ${{{name}}}: a list cannot be substituted")
            return str(value)

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def _function(self, key: str, arg: Any) -> Any:
        if key == "Fn::GetAtt":
            return self._get_att(arg)
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::FindInMap":
            name, top, second = (self.resolve(a) for a in arg[:3])
            try:
                return self.template["Mappings"][name][top][second]
            except KeyError as exc:
                raise TemplateResolutionError(f"Fn::FindInMap {name}/{top}/{second}: not found") from exc
        args = self.resolve(arg)
        if key == "Fn::Join":
            separator, items = args
            return str(separator).join(str(i) for i in items)
        if key == "Fn::Select":
            index, items = args
            return items[int(index)]
        if key == "Fn::Split":
            separator, text = args
            return str(text).split(separator)
        if key == "Fn::Equals":
            return str(args[0]) == str(args[1])
        if key == "Fn::Not":
            return not args[0]
        if key == "Fn::And":
            return all(args)
        if key == "Fn::Or":
            return any(args)
        if key == "Fn::Base64":
            return base64.b64encode(str(args).encode()).decode()
        raise TemplateResolutionError(f"{key} is not supported by the sandbox's template resolver")


def references(value: Any, logical_id: str) -> bool:
    """Whether `value` (a template fragment) refers to resource `logical_id` by Ref, GetAtt or Sub."""
    if isinstance(value, list):
        return any(references(v, logical_id) for v in value)
    if isinstance(value, str):
        return False
    if not isinstance(value, dict):
        return False
    for key, arg in value.items():
        if key == "Ref" and arg == logical_id:
            return True
        if key == "Fn::GetAtt":
            target = arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0]
            if target == logical_id:
                return True
        if key == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            names = {m.strip().split(".", 1)[0] for m in _SUB_VARIABLE.findall(text)}
            if logical_id in names:
                return True
        if references(arg, logical_id):
            return True
    return False


@dataclass
class AwsAttributes:
    """`Fn::GetAtt` values of the resource types the project templates use, read from (moto) AWS."""

    clients: Callable[[str], Any]
    region: str
    account: str

    def __call__(self, logical_id: str, resource_type: str, physical_id: str, attribute: str) -> Any:
        handler = _ATTRIBUTES.get((resource_type, attribute))
        if handler is None:
            raise TemplateResolutionError(
                f"GetAtt {logical_id}.{attribute} ({resource_type}) is not known to the sandbox resolver; "
                "add it to scripts/sandbox/cfn_template.py"
            )
        return handler(self, physical_id)

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"


_ATTRIBUTES: dict[tuple[str, str], Callable[[AwsAttributes, str], Any]] = {
    ("AWS::Lambda::Function", "Arn"): lambda a, pid: a.clients("lambda").get_function(FunctionName=pid)[
        "Configuration"]["FunctionArn"],
    ("AWS::IAM::Role", "Arn"): lambda a, pid: a.clients("iam").get_role(RoleName=pid)["Role"]["Arn"],
    ("AWS::IAM::Role", "RoleId"): lambda a, pid: a.clients("iam").get_role(RoleName=pid)["Role"]["RoleId"],
    ("AWS::S3::Bucket", "Arn"): lambda a, pid: f"arn:aws:s3:::{pid}",
    ("AWS::S3::Bucket", "DomainName"): lambda a, pid: f"{pid}.s3.amazonaws.com",
    ("AWS::S3::Bucket", "RegionalDomainName"): lambda a, pid: f"{pid}.s3.{a.region}.amazonaws.com",
    ("AWS::Events::Rule", "Arn"): lambda a, pid: a.clients("events").describe_rule(Name=pid)["Arn"],
    ("AWS::SQS::Queue", "Arn"): lambda a, pid: a.clients("sqs").get_queue_attributes(
        QueueUrl=pid, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
    ("AWS::SageMaker::ModelPackageGroup", "ModelPackageGroupArn"): lambda a, pid: pid
    if pid.startswith("arn:") else a.arn("sagemaker", f"model-package-group/{pid}"),
    ("AWS::SecretsManager::Secret", "Id"): lambda a, pid: pid,
    ("AWS::IAM::ManagedPolicy", "PolicyArn"): lambda a, pid: pid,
}


@dataclass(frozen=True)
class DeployedStack:
    """A stack in (moto) CloudFormation with its template and a resolver bound to its values."""

    description: Mapping[str, Any]
    template: Mapping[str, Any]
    resolver: Resolver

    @property
    def stack_id(self) -> str:
        return str(self.description["StackId"])

    def created(self, logical_id: str) -> bool:
        """Whether CloudFormation should have created the resource (its Condition holds)."""
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.resolver.condition(condition)


def load_stack(
    cfn: Any, clients: Callable[[str], Any], region: str, account: str, stack_name: str,
    parameters: Mapping[str, str] | None = None, refs: Mapping[str, str] | None = None,
) -> DeployedStack:
    """Read a stack's template, parameters and physical ids; `refs` adds ids of resources moto skipped."""
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    template = load_template(cfn.get_template(StackName=stack_name)["TemplateBody"])
    resources = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
    values.update(parameters or {})
    # moto lists the resources it skipped without ids
    physical_ids = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources
                    if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
    physical_ids.update(refs or {})
    resolver = Resolver(
        template=template,
        parameters=values,
        pseudo={
            "AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": "aws",
            "AWS::StackName": stack["StackName"], "AWS::StackId": stack["StackId"],
            "AWS::URLSuffix": "amazonaws.com",
        },
        physical_ids=physical_ids,
        attribute=AwsAttributes(clients, region, account),
    )
    return DeployedStack(stack, template, resolver)
