"""Load the bundle's CloudFormation templates and evaluate the intrinsic functions tests need.

A deliberately small evaluator: Ref, Fn::Sub, Fn::If, Fn::Join, Fn::Select, Fn::Split, Fn::GetAtt and
the condition functions, with parameter values and GetAtt results supplied by the test. Anything else
raises, so a template using an unsupported function fails loudly instead of being half-checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

REPO = Path(__file__).resolve().parents[3]
TEMPLATES = REPO / "templates"
ACCOUNT = "123456789012"
REGION = "us-east-1"
NO_VALUE = object()


def load(name: str) -> dict[str, Any]:
    """The template as plain dicts and lists, short-form tags expanded (!Ref -> {"Ref": ...})."""
    return load_text((TEMPLATES / name).read_text(encoding="utf-8"))


def load_text(text: str) -> dict[str, Any]:
    template, errors = decode_str(text)
    assert not errors, errors
    return _plain(template)


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
    """Evaluates a template's intrinsic functions for one set of parameters."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, Any],
        getatt: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.refs: dict[str, Any] = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::StackName": "stack",
            "AWS::NoValue": NO_VALUE,
            **parameters,
        }
        self.getatt = dict(getatt or {})
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self._condition_value(self.template["Conditions"][name])
        return self._conditions[name]

    def _condition_value(self, node: Any) -> bool:
        ((fn, args),) = node.items()
        if fn == "Fn::Equals":
            left, right = (self.value(a) for a in args)
            return bool(left == right)
        if fn == "Fn::Not":
            return not self._condition_value(args[0])
        if fn == "Fn::And":
            return all(self._condition_value(a) for a in args)
        if fn == "Fn::Or":
            return any(self._condition_value(a) for a in args)
        if fn == "Condition":
            return self.condition(args)
        raise AssertionError(f"unsupported condition function {fn}")

    def resource_exists(self, logical_id: str) -> bool:
        condition = self.template["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def value(self, node: Any) -> Any:
        """The node with every intrinsic function evaluated and AWS::NoValue entries removed."""
        if isinstance(node, list):
            return [v for v in (self.value(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, args),) = node.items()
            if key == "Ref":
                if args in self.refs:
                    return self.refs[args]
                assert args in self.template["Resources"], f"Ref to unknown {args}"
                return self.getatt.get(args, f"<{args}>")
            if key == "Fn::GetAtt":
                name = ".".join(args) if isinstance(args, list) else args
                return self.getatt.get(name, f"<{name}>")
            if key == "Fn::Sub":
                return self._sub(args)
            if key == "Fn::If":
                condition, when_true, when_false = args
                return self.value(when_true if self.condition(condition) else when_false)
            if key == "Fn::Join":
                separator, items = args
                return separator.join(str(v) for v in self.value(items))
            if key == "Fn::Select":
                index, items = args
                return self.value(items)[int(self.value(index))]
            if key == "Fn::Split":
                separator, text = args
                return str(self.value(text)).split(separator)
            if key.startswith("Fn::") or key == "Condition":
                raise AssertionError(f"unsupported intrinsic function {key}")
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not NO_VALUE}

    def _sub(self, args: Any) -> str:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], args[1])
        local = {k: self.value(v) for k, v in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if name in self.refs:
                return str(self.refs[name])
            if "." in name:
                return str(self.value({"Fn::GetAtt": name.split(".", 1)}))
            return str(self.value({"Ref": name}))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.value(self.template["Resources"][logical_id].get("Properties", {}))


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
