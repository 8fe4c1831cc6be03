"""Load the bundle's CloudFormation templates and evaluate their intrinsic functions for tests.

Evaluation uses the same resolver as the sandbox, with parameter values and GetAtt results supplied
by the test; an unsupported function raises, so a template is never half-checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

from scripts.sandbox.cfn_template import Resolver

REPO = Path(__file__).resolve().parents[3]
TEMPLATES = REPO / "templates"
ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": "stack",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/stack/1",
    "AWS::URLSuffix": "amazonaws.com",
}


def load(name: str) -> dict[str, Any]:
    """The template as plain dicts and lists, short-form tags expanded (!Ref -> {"Ref": ...})."""
    return load_text((TEMPLATES / name).read_text(encoding="utf-8"))


def load_text(text: str) -> dict[str, Any]:
    template, errors = decode_str(text)
    assert not errors, errors
    plain: dict[str, Any] = _plain(template)
    return plain


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def parameter_values(template: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """Defaults overridden by `given`; CommaDelimitedList values become lists."""
    values: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        value = given.get(name, spec.get("Default"))
        if value is None:
            continue
        if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
            value = value.split(",")
        values[name] = value
    return values


class Evaluator:
    """The sandbox's template resolver (scripts/sandbox/cfn_template.py) bound to test values.

    Resource Refs and GetAtts come from `getatt` ("Name" or "Name.Attribute"), else a placeholder
    "<Name>" / "<Name.Attribute>", so tests see which resource a value points at.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        getatt: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.refs: dict[str, Any] = {**PSEUDO, **parameters}
        values = dict(getatt or {})
        declared = template.get("Parameters", {})
        self._resolver = Resolver(
            template=template,
            parameters={
                name: ",".join(value) if isinstance(value, list) else str(value)
                for name, value in parameters.items()
                if name in declared
            },
            pseudo=PSEUDO,
            physical_ids={name: values.get(name, f"<{name}>") for name in template.get("Resources", {})},
            attribute=lambda name, _type, _id, attribute: values.get(
                f"{name}.{attribute}", f"<{name}.{attribute}>"
            ),
        )

    def condition(self, name: str) -> bool:
        return self._resolver.condition(name)

    def resource_exists(self, logical_id: str) -> bool:
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def value(self, node: Any) -> Any:
        """The node with every intrinsic function evaluated and AWS::NoValue entries removed."""
        return self._resolver.resolve(node)

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.value(self.template["Resources"][logical_id].get("Properties", {})))


def policy_documents(evaluator: Evaluator) -> list[tuple[str, dict[str, Any]]]:
    """Every IAM policy document of the existing resources, named `<resource>/<policy>`."""
    found: list[tuple[str, dict[str, Any]]] = []
    for logical_id, resource in evaluator.template["Resources"].items():
        if not evaluator.resource_exists(logical_id):
            continue
        kind = resource["Type"]
        props = evaluator.properties(logical_id)
        if kind in ("AWS::IAM::Role", "AWS::IAM::User"):
            for policy in props.get("Policies", []):
                found.append((f"{logical_id}/{policy['PolicyName']}", policy["PolicyDocument"]))
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::Policy"):
            found.append((logical_id, props["PolicyDocument"]))
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
