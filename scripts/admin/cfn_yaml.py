"""Read CloudFormation templates (JSON or YAML with short-form tags such as `!Ref` and `!GetAtt a.b`).

Short forms become their long form (`{"Ref": ...}`, `{"Fn::GetAtt": [a, b]}`), so the result is the
same dict CloudFormation itself works with. Used by bootstrap (template parameters) and the sandbox's
template resolver.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import yaml


class TemplateFormatError(ValueError):
    """The text is not a CloudFormation template (not JSON or YAML, or not a mapping)."""


_SHORT_TAGS = {
    "Ref": "Ref", "Condition": "Condition", "GetAtt": "Fn::GetAtt", "Sub": "Fn::Sub", "Join": "Fn::Join",
    "If": "Fn::If", "Equals": "Fn::Equals", "Not": "Fn::Not", "And": "Fn::And", "Or": "Fn::Or",
    "Select": "Fn::Select", "Split": "Fn::Split", "FindInMap": "Fn::FindInMap", "Base64": "Fn::Base64",
    "ImportValue": "Fn::ImportValue", "GetAZs": "Fn::GetAZs", "Cidr": "Fn::Cidr",
}


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that turns CloudFormation short-form tags into their long form."""


def _short_form(full: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if full == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {full: value}

    return construct


for _tag, _full in _SHORT_TAGS.items():
    _CfnLoader.add_constructor(f"!{_tag}", _short_form(_full))


def _other_short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    """Any other `!X` (rule functions such as !Contains, !EachMemberIn) becomes `Fn::X`."""
    return _short_form(f"Fn::{suffix}")(loader, node)


_CfnLoader.add_multi_constructor("!", _other_short_form)


def load_template(body: str | Mapping[str, Any]) -> dict[str, Any]:
    """A template as a dict, from the JSON or YAML text (or the dict boto3 already parsed)."""
    if isinstance(body, Mapping):
        return dict(json.loads(json.dumps(body)))  # plain dicts, no OrderedDict
    text = body.strip()
    try:
        if text.startswith("{"):
            return dict(json.loads(text))
        loaded = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with only CFN tags
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise TemplateFormatError(str(exc).splitlines()[0]) from exc
    if not isinstance(loaded, dict):
        raise TemplateFormatError("the template is not a mapping")
    return loaded
