"""Offline IAM policy evaluation: would AWS allow this principal this action on this resource?

moto evaluates no IAM at all, so the bundle's tests ask this module instead. It implements the decision
AWS documents for a request inside one account, with the rules below (IAM User Guide, "Policy evaluation
logic", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):

1. An explicit ``Deny`` in any policy that applies (identity policies, the permissions boundary, the
   resource's policy) decides: denied.
2. Otherwise an ``Allow`` is needed in an identity policy of the principal, and, when the principal has
   a permissions boundary, also in the boundary ("the effective permissions are the intersection",
   https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html).
3. A resource policy's ``Allow`` that names the principal's role/user ARN grants on its own inside the
   account (rule 1 still applies). Trust policies and key policies must allow in every case.

Statement matching (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html):
- ``Action``/``NotAction``: ``service:Action`` globs with ``*`` and ``?``, case-insensitive.
- ``Resource``/``NotResource``: ARN globs, case-sensitive; the partition, service, region and account
  segments are matched one by one, and a wildcard in the resource part may span ``/`` and ``:``.
- ``Condition``: every operator block and every key in it must match (AND); several values for one key
  match when any does (OR), for negated operators when none does. A key absent from the request makes a
  positive operator false and a negated one (``StringNotEquals``, ``ArnNotLike``, ...) true;
  ``...IfExists`` makes an absent key true; ``Null`` tests presence; ``ForAnyValue:``/``ForAllValues:``
  qualify multi-valued keys (ForAllValues is true for an absent key)
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html,
  .../reference_policies_condition-single-vs-multi-valued-context-keys.html).
- Policy variables ``${key}`` (and ``${key, 'default'}``) in ``Resource`` and in string/ARN condition
  values take the request context's value; ``${*}``, ``${?}``, ``${$}`` are the literal characters; a
  variable whose key is missing makes that resource or value match nothing
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html).
- Context keys every request carries are filled in from the principal: ``aws:PrincipalArn``,
  ``aws:PrincipalAccount``, ``aws:PrincipalType`` and ``aws:PrincipalTag/<key>`` for each of its tags.

Not evaluated (the README says so): service control and resource control policies, session policies,
ACLs, KMS key policies, VPC endpoint policies, cross-account access, and date or IP conditions.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ContextValue = str | bool | int | Sequence[str]
Context = Mapping[str, ContextValue]

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}
_UNRESOLVED = object()


class PolicyError(ValueError):
    """A policy document this evaluator cannot read (an unknown operator, a malformed statement)."""


@dataclass(frozen=True)
class Policy:
    """A policy document with a name for decisions to cite."""

    name: str
    document: Mapping[str, Any]

    def statements(self) -> list[Mapping[str, Any]]:
        raw = self.document.get("Statement", [])
        items = raw if isinstance(raw, list) else [raw]
        for item in items:
            if not isinstance(item, Mapping) or item.get("Effect") not in ("Allow", "Deny"):
                raise PolicyError(f"{self.name}: every statement needs Effect Allow or Deny: {item!r}")
        return list(items)


@dataclass(frozen=True)
class Principal:
    """An IAM role or user: its identity policies, its permissions boundary and its tags."""

    arn: str
    policies: tuple[Policy, ...]
    boundary: Policy | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def kind(self) -> str:
        return "AssumedRole" if ":role/" in self.arn else "User"

    def context(self) -> dict[str, ContextValue]:
        keys: dict[str, ContextValue] = {
            "aws:PrincipalArn": self.arn,
            "aws:PrincipalAccount": self.account,
            "aws:PrincipalType": self.kind,
        }
        for key, value in self.tags.items():
            keys[f"aws:PrincipalTag/{key}"] = value
        return keys


@dataclass(frozen=True)
class Request:
    """One authorization question: an action on one resource ARN, with the request's context keys."""

    action: str
    resource: str
    context: Context = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


# --- the decision -------------------------------------------------------------------------------------


def evaluate(principal: Principal, request: Request, resource_policy: Policy | None = None) -> Decision:
    """AWS's decision for `principal` making `request` (same account), following the module's rules."""
    context = _CaseInsensitive({**principal.context(), **request.context})
    applicable = list(principal.policies)
    if principal.boundary is not None:
        applicable.append(principal.boundary)
    if resource_policy is not None:
        applicable.append(resource_policy)
    for policy in applicable:
        deny = _first_match(
            policy, "Deny", request, context, principal.arn if policy is resource_policy else None
        )
        if deny:
            return Decision(False, f"explicit deny in {policy.name} ({deny})")
    if resource_policy is not None:
        grant = _first_match(
            resource_policy, "Allow", request, context, principal.arn, require_principal=True
        )
        if grant:
            return Decision(True, f"allowed by {resource_policy.name} ({grant}), naming the principal")
    if principal.boundary is not None and not _first_match(principal.boundary, "Allow", request, context):
        return Decision(False, f"not allowed by the permissions boundary {principal.boundary.name}")
    for policy in principal.policies:
        grant = _first_match(policy, "Allow", request, context)
        if grant:
            return Decision(True, f"allowed by {policy.name} ({grant})")
    return Decision(False, "no identity policy allows it (implicit deny)")


def evaluate_trust(trust: Policy, caller: str, action: str, context: Context | None = None) -> Decision:
    """May `caller` (a service principal, an OIDC provider ARN, or a role/user ARN) assume the role?

    A trust policy is a resource policy on the role: it must allow, whoever the caller is, and its
    explicit denies win (IAM User Guide, "How IAM roles differ from resource-based policies").
    """
    keys = _CaseInsensitive(dict(context or {}))
    request = Request(action, "*")
    deny = _first_match(trust, "Deny", request, keys, caller)
    if deny:
        return Decision(False, f"explicit deny in {trust.name} ({deny})")
    grant = _first_match(trust, "Allow", request, keys, caller, require_principal=True, trust=True)
    if grant:
        return Decision(True, f"allowed by {trust.name} ({grant})")
    return Decision(False, f"{trust.name} does not trust {caller} for {action} with this context")


def evaluate_service(resource_policy: Policy, service: str, request: Request) -> Decision:
    """May an AWS service principal (e.g. events.amazonaws.com) do `request` under `resource_policy`?"""
    keys = _CaseInsensitive(dict(request.context))
    deny = _first_match(resource_policy, "Deny", request, keys, service)
    if deny:
        return Decision(False, f"explicit deny in {resource_policy.name} ({deny})")
    grant = _first_match(resource_policy, "Allow", request, keys, service, require_principal=True)
    if grant:
        return Decision(True, f"allowed by {resource_policy.name} ({grant})")
    return Decision(False, f"{resource_policy.name} does not allow {service} {request.action}")


# --- statements ---------------------------------------------------------------------------------------


def _first_match(
    policy: Policy,
    effect: str,
    request: Request,
    context: _CaseInsensitive,
    caller: str | None = None,
    *,
    require_principal: bool = False,
    trust: bool = False,
) -> str:
    """The label (Sid or index) of the first `effect` statement matching the request, or ""."""
    for index, statement in enumerate(policy.statements()):
        if statement["Effect"] != effect:
            continue
        if "Principal" in statement or "NotPrincipal" in statement:
            if caller is None or not _principal_matches(statement, caller):
                continue
        elif require_principal:
            continue
        if not _action_matches(statement, request.action):
            continue
        if not trust and not _resource_matches(statement, request.resource, context):
            continue
        if not _conditions_match(statement.get("Condition", {}), context):
            continue
        return str(statement.get("Sid") or f"statement {index + 1}")
    return ""


def _listify(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _principal_matches(statement: Mapping[str, Any], caller: str) -> bool:
    if "NotPrincipal" in statement:
        raise PolicyError("NotPrincipal is not supported (and AWS advises against it)")
    principal = statement["Principal"]
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        raise PolicyError(f"Principal must be '*' or an object, got {principal!r}")
    for kind in ("AWS", "Service", "Federated", "CanonicalUser"):
        for value in _listify(principal.get(kind)):
            if value == "*" or value == caller:
                return True
            if kind == "AWS" and re.fullmatch(r"\d{12}", str(value)) and caller.split(":")[4:5] == [value]:
                return True
            if (
                kind == "AWS"
                and str(value).endswith(":root")
                and caller.split(":")[4:5] == [str(value).split(":")[4]]
            ):
                return True
    return False


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "Action" in statement:
        return any(_glob(pattern, action, case_sensitive=False) for pattern in _listify(statement["Action"]))
    if "NotAction" in statement:
        return not any(
            _glob(pattern, action, case_sensitive=False) for pattern in _listify(statement["NotAction"])
        )
    raise PolicyError(f"statement without Action or NotAction: {statement!r}")


def _resource_matches(statement: Mapping[str, Any], resource: str, context: _CaseInsensitive) -> bool:
    if "Resource" in statement:
        return any(_arn_matches(p, resource, context) for p in _listify(statement["Resource"]))
    if "NotResource" in statement:
        return not any(_arn_matches(p, resource, context) for p in _listify(statement["NotResource"]))
    raise PolicyError(f"statement without Resource or NotResource: {statement!r}")


def _arn_matches(pattern: str, resource: str, context: _CaseInsensitive) -> bool:
    substituted = substitute(pattern, context)
    if substituted is None:
        return False
    if substituted == "*":
        return True
    if resource == "*":
        return False
    want, have = substituted.split(":", 5), resource.split(":", 5)
    if len(want) != 6 or len(have) != 6:
        return _glob(substituted, resource)
    return all(_glob(w, h) for w, h in zip(want, have, strict=True))


def substitute(text: str, context: Mapping[str, ContextValue]) -> str | None:
    """`text` with policy variables replaced; None when a variable has no value and no default.

    The result is a glob: ``${*}`` and ``${?}`` stay literal (escaped with brackets)."""
    failed = False

    def replace(match: re.Match[str]) -> str:
        nonlocal failed
        body = match.group(1)
        if body in _ESCAPES:
            return "[" + body + "]" if body in "*?" else body
        key, _, default = body.partition(",")
        value = context.get(key.strip())
        if value is None or isinstance(value, list | tuple | bool):
            default = default.strip()
            if default.startswith("'") and default.endswith("'") and len(default) >= 2:
                return default[1:-1]
            failed = True
            return ""
        return str(value).replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")

    result = _VARIABLE.sub(replace, text)
    return None if failed else result


def _glob(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


# --- conditions ---------------------------------------------------------------------------------------

_STRING_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (lambda want, have: want == have, False),
    "StringNotEquals": (lambda want, have: want == have, True),
    "StringEqualsIgnoreCase": (lambda want, have: want.lower() == have.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda want, have: want.lower() == have.lower(), True),
    "StringLike": (lambda want, have: _glob(want, have), False),
    "StringNotLike": (lambda want, have: _glob(want, have), True),
    "ArnEquals": (lambda want, have: _arn_equal(want, have, like=False), False),
    "ArnNotEquals": (lambda want, have: _arn_equal(want, have, like=False), True),
    "ArnLike": (lambda want, have: _arn_equal(want, have, like=True), False),
    "ArnNotLike": (lambda want, have: _arn_equal(want, have, like=True), True),
}
_NUMERIC_OPERATORS: dict[str, tuple[Callable[[float, float], bool], bool]] = {
    "NumericEquals": (lambda a, b: a == b, False),
    "NumericNotEquals": (lambda a, b: a == b, True),
    "NumericLessThan": (lambda a, b: b < a, False),
    "NumericLessThanEquals": (lambda a, b: b <= a, False),
    "NumericGreaterThan": (lambda a, b: b > a, False),
    "NumericGreaterThanEquals": (lambda a, b: b >= a, False),
}


def _arn_equal(want: str, have: str, *, like: bool) -> bool:
    parts_want, parts_have = want.split(":", 5), have.split(":", 5)
    if len(parts_want) != 6 or len(parts_have) != 6:
        return False
    if like:
        return all(_glob(w, h) for w, h in zip(parts_want, parts_have, strict=True))
    return want == have


def _conditions_match(conditions: Mapping[str, Any], context: _CaseInsensitive) -> bool:
    if not isinstance(conditions, Mapping):
        raise PolicyError(f"Condition must be an object, got {conditions!r}")
    for operator, block in conditions.items():
        if not isinstance(block, Mapping):
            raise PolicyError(f"condition {operator} must map keys to values")
        for key, values in block.items():
            if not _condition_matches(operator, key, _listify(values), context):
                return False
    return True


def _condition_matches(operator: str, key: str, wanted: list[Any], context: _CaseInsensitive) -> bool:
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise PolicyError(f"unknown condition qualifier {qualifier}")
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    present = key in context
    if base == "Null":
        expect_absent = [str(w).lower() == "true" for w in wanted]
        return any(flag == (not present) for flag in expect_absent)
    if not present:
        if if_exists or qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return _negated(base)
    raw = context[key]
    have_values = [str(v) for v in raw] if isinstance(raw, list | tuple) else [_as_text(raw)]
    if qualifier == "ForAllValues":
        return all(_single(base, wanted, have, context) for have in have_values)
    if qualifier == "ForAnyValue" or len(have_values) != 1:
        return any(_single(base, wanted, have, context) for have in have_values)
    return _single(base, wanted, have_values[0], context)


def _negated(base: str) -> bool:
    if base in _STRING_OPERATORS:
        return _STRING_OPERATORS[base][1]
    if base in _NUMERIC_OPERATORS:
        return _NUMERIC_OPERATORS[base][1]
    if base == "Bool":
        return False
    raise PolicyError(f"unsupported condition operator {base}")


def _single(base: str, wanted: list[Any], have: str, context: _CaseInsensitive) -> bool:
    if base in _STRING_OPERATORS:
        compare, negated = _STRING_OPERATORS[base]
        values = [substitute(str(w), context) for w in wanted]
        if base.startswith(("StringEquals", "StringNotEquals", "ArnEquals", "ArnNotEquals")):
            values = [None if v is None else _unescape(v) for v in values]
        hit = any(v is not None and compare(v, have) for v in values)
        return not hit if negated else hit
    if base in _NUMERIC_OPERATORS:
        compare_n, negated = _NUMERIC_OPERATORS[base]
        hit = any(compare_n(float(w), float(have)) for w in wanted)
        return not hit if negated else hit
    if base == "Bool":
        return any(str(w).lower() == have.lower() for w in wanted)
    raise PolicyError(f"unsupported condition operator {base}")


def _unescape(glob: str) -> str:
    return glob.replace("[*]", "*").replace("[?]", "?").replace("[[]", "[")


def _as_text(value: ContextValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _CaseInsensitive(dict[str, ContextValue]):
    """Condition key names are case-insensitive (IAM User Guide, condition element); values are not."""

    def __init__(self, values: Mapping[str, ContextValue]) -> None:
        super().__init__({k.lower(): v for k, v in values.items()})

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def __getitem__(self, key: str) -> ContextValue:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def actions_of(policies: Iterable[Policy]) -> set[str]:
    """Every action string named in Allow or Deny statements (for lint-style checks)."""
    found: set[str] = set()
    for policy in policies:
        for statement in policy.statements():
            found.update(str(a) for a in _listify(statement.get("Action")))
    return found
