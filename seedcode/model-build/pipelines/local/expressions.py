"""Pipeline definition expressions: Get, Std:Join, Std:JsonGet and conditions."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[['\"]?([^\]'\"]+)['\"]?\]")


class ExpressionError(ValueError):
    """An expression in the definition refers to something that does not exist (yet)."""


@dataclass
class Context:
    """What expressions can read: parameters, execution variables, step properties, property files."""

    parameters: dict[str, Any]
    execution: dict[str, Any]
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    property_files: dict[str, dict[str, Any]] = field(default_factory=dict)


def path_tokens(path: str) -> list[str]:
    """`Outputs['train'].S3Output.S3Uri` -> ['Outputs', 'train', 'S3Output', 'S3Uri']."""
    return [a or b for a, b in _PATH_TOKEN.findall(path)]


def _walk(document: Any, tokens: list[str], where: str) -> Any:
    value = document
    for token in tokens:
        if isinstance(value, Mapping) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            raise ExpressionError(f"{where}: no {token!r}")
    return value


def _get(path: str, context: Context) -> Any:
    tokens = path_tokens(path)
    if not tokens:
        raise ExpressionError(f"empty Get path {path!r}")
    root, rest = tokens[0], tokens[1:]
    if root == "Parameters" and len(rest) == 1:
        if rest[0] not in context.parameters:
            raise ExpressionError(f"unknown pipeline parameter {rest[0]!r}")
        return context.parameters[rest[0]]
    if root == "Execution" and len(rest) == 1:
        return _walk(context.execution, rest, "execution variable")
    if root == "Steps" and rest:
        step = rest[0]
        if len(rest) >= 3 and rest[1] == "PropertyFiles":
            key = f"{step}.{rest[2]}"
            if key not in context.property_files:
                raise ExpressionError(f"property file {rest[2]!r} of step {step!r} is not available")
            return context.property_files[key]
        if step not in context.steps:
            raise ExpressionError(f"step {step!r} has not run")
        return _walk(context.steps[step], rest[1:], f"properties of step {step!r}")
    raise ExpressionError(f"unsupported Get path {path!r}")


def json_get(document: Any, path: str) -> Any:
    """The subset of JsonPath that JsonGet uses: dotted keys and [index]."""
    return _walk(document, path_tokens(path.removeprefix("$.")), f"JsonGet path {path!r}")


def to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve(value: Any, context: Context) -> Any:
    """Replace every expression inside `value` with its current value."""
    if isinstance(value, list):
        return [resolve(item, context) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Get"}:
        return _get(value["Get"], context)
    if set(value) == {"Std:Join"}:
        join = value["Std:Join"]
        return to_text(join.get("On", "")).join(to_text(resolve(v, context)) for v in join["Values"])
    if set(value) == {"Std:JsonGet"}:
        spec = value["Std:JsonGet"]
        return json_get(resolve(spec["PropertyFile"], context), spec["Path"])
    return {key: resolve(item, context) for key, item in value.items()}


_COMPARE = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


def _number_or_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def evaluate_condition(condition: Mapping[str, Any], context: Context) -> bool:
    """One entry of a Condition step's `Conditions` list."""
    kind = condition.get("Type")
    if kind in _COMPARE:
        left = _number_or_value(resolve(condition["LeftValue"], context))
        right = _number_or_value(resolve(condition["RightValue"], context))
        return bool(_COMPARE[kind](left, right))
    if kind == "In":
        value = resolve(condition["QueryValue"], context)
        return value in [resolve(v, context) for v in condition["Values"]]
    if kind == "Not":
        return not evaluate_condition(condition["Condition"], context)
    if kind == "Or":
        return any(evaluate_condition(c, context) for c in condition["Conditions"])
    raise ExpressionError(f"unsupported condition type {kind!r}")


def references(value: Any) -> Iterator[str]:
    """Names of the steps an argument tree reads from (`Get: Steps.<name>...`)."""
    if isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        get = value.get("Get")
        if isinstance(get, str) and get.startswith("Steps."):
            tokens = path_tokens(get)
            if len(tokens) > 1:
                yield tokens[1]
        for item in value.values():
            yield from references(item)
