"""scripts/iam/engine.py decides as the IAM User Guide's policy evaluation logic says.

Each test is one documented rule (reference_policies_evaluation-logic.html, _condition_operators.html,
_variables.html, access_policies_boundaries.html); the examples are the guide's own shapes.
"""

from __future__ import annotations

from typing import Any

import pytest

from scripts.iam.engine import (
    Policy,
    PolicyError,
    Principal,
    Request,
    evaluate,
    evaluate_service,
    evaluate_trust,
)

ROLE = "arn:aws:iam::111122223333:role/app/worker"


def policy(*statements: dict[str, Any], name: str = "p") -> Policy:
    return Policy(name, {"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def who(*policies: Policy, boundary: Policy | None = None, tags: dict[str, str] | None = None) -> Principal:
    return Principal(ROLE, tuple(policies), boundary, tags or {})


def test_nothing_is_allowed_without_an_allow() -> None:
    decision = evaluate(who(), Request("s3:GetObject", "arn:aws:s3:::b/k"))
    assert not decision and "implicit deny" in decision.reason


def test_an_explicit_deny_beats_any_allow() -> None:
    principal = who(policy(allow("s3:*")), policy(deny("s3:GetObject", "arn:aws:s3:::b/*"), name="fence"))
    assert not evaluate(principal, Request("s3:GetObject", "arn:aws:s3:::b/k"))
    assert evaluate(principal, Request("s3:PutObject", "arn:aws:s3:::b/k"))


def test_a_boundary_caps_what_identity_policies_grant() -> None:
    principal = who(policy(allow("*")), boundary=policy(allow("s3:GetObject"), name="boundary"))
    assert evaluate(principal, Request("s3:GetObject", "arn:aws:s3:::b/k"))
    decision = evaluate(principal, Request("iam:CreateUser", "arn:aws:iam::111122223333:user/x"))
    assert not decision and "boundary" in decision.reason


def test_a_boundary_alone_grants_nothing() -> None:
    assert not evaluate(who(boundary=policy(allow("*"))), Request("s3:GetObject", "arn:aws:s3:::b/k"))


def test_actions_match_case_insensitively_with_wildcards() -> None:
    principal = who(policy(allow(["S3:get*", "sagemaker:Describe?odel"])))
    assert evaluate(principal, Request("s3:GetObject", "*"))
    assert evaluate(principal, Request("sagemaker:DescribeModel", "*"))
    assert not evaluate(principal, Request("s3:PutObject", "*"))


def test_not_action_and_not_resource_match_the_complement() -> None:
    principal = who(policy({"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret/*"}))
    assert evaluate(principal, Request("s3:GetObject", "arn:aws:s3:::open/k"))
    assert not evaluate(principal, Request("s3:GetObject", "arn:aws:s3:::secret/k"))
    assert not evaluate(principal, Request("iam:PassRole", "arn:aws:iam::111122223333:role/x"))


def test_arn_segments_do_not_bleed_into_each_other() -> None:
    # A wildcard in the account segment matches that segment only; in the resource part it spans '/'.
    principal = who(
        policy(allow("sagemaker:DescribeEndpoint", "arn:aws:sagemaker:us-east-1:*:endpoint/foo-*"))
    )
    assert evaluate(
        principal, Request("sagemaker:DescribeEndpoint", "arn:aws:sagemaker:us-east-1:1:endpoint/foo-a/b")
    )
    assert not evaluate(
        principal, Request("sagemaker:DescribeEndpoint", "arn:aws:sagemaker:eu-west-1:1:endpoint/foo-a")
    )


def test_a_resource_scoped_statement_never_matches_a_resourceless_request() -> None:
    principal = who(policy(allow("ecr:GetAuthorizationToken", "arn:aws:ecr:us-east-1:1:repository/x")))
    assert not evaluate(principal, Request("ecr:GetAuthorizationToken", "*"))


@pytest.mark.parametrize(
    ("operator", "wanted", "have", "expected"),
    [
        ("StringEquals", "a", "a", True),
        ("StringEquals", "a", "A", False),
        ("StringEqualsIgnoreCase", "a", "A", True),
        (
            "StringLike",
            "project_path:g/p:ref_type:branch:ref:*",
            "project_path:g/p:ref_type:branch:ref:x",
            True,
        ),
        ("StringLike", "project_path:g/p:*", "project_path:g/q:ref_type:branch:ref:x", False),
        ("StringNotEquals", "a", "b", True),
        ("StringNotLike", ["x*", "y*"], "y1", False),
        ("ArnLike", "arn:aws:iam::1:policy/team/*", "arn:aws:iam::1:policy/team/p", True),
        ("ArnEquals", "arn:aws:iam::1:policy/b", "arn:aws:iam::1:policy/b", True),
        ("ArnNotLike", "arn:aws:iam::1:role/app/*", "arn:aws:iam::1:role/other", True),
        ("Bool", "false", False, True),
        ("NumericLessThan", "10", "9", True),
    ],
)
def test_condition_operators(operator: str, wanted: Any, have: Any, expected: bool) -> None:
    principal = who(policy(allow("s3:GetObject", Condition={operator: {"k:key": wanted}})))
    assert bool(evaluate(principal, Request("s3:GetObject", "*", {"k:key": have}))) is expected


def test_a_missing_key_fails_positive_operators_and_passes_negated_ones() -> None:
    positive = who(policy(allow("s3:GetObject", Condition={"StringEquals": {"k:key": "a"}})))
    negated = who(policy(allow("s3:GetObject", Condition={"StringNotEquals": {"k:key": "a"}})))
    if_exists = who(policy(allow("s3:GetObject", Condition={"StringEqualsIfExists": {"k:key": "a"}})))
    assert not evaluate(positive, Request("s3:GetObject", "*"))
    assert evaluate(negated, Request("s3:GetObject", "*"))
    assert evaluate(if_exists, Request("s3:GetObject", "*"))
    assert not evaluate(if_exists, Request("s3:GetObject", "*", {"k:key": "b"}))


def test_null_tests_whether_the_key_is_present() -> None:
    principal = who(policy(allow("s3:GetObject", Condition={"Null": {"k:key": "true"}})))
    assert evaluate(principal, Request("s3:GetObject", "*"))
    assert not evaluate(principal, Request("s3:GetObject", "*", {"k:key": "x"}))


def test_set_operators_on_multivalued_keys() -> None:
    any_value = who(
        policy(allow("sagemaker:AddTags", Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}}))
    )
    all_values = who(
        policy(
            allow("sagemaker:AddTags", Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}})
        )
    )
    assert evaluate(any_value, Request("sagemaker:AddTags", "*", {"aws:TagKeys": ["x", "a"]}))
    assert not evaluate(any_value, Request("sagemaker:AddTags", "*"))
    assert not evaluate(all_values, Request("sagemaker:AddTags", "*", {"aws:TagKeys": ["a", "c"]}))
    assert evaluate(all_values, Request("sagemaker:AddTags", "*"))  # ForAllValues with no key: true


def test_every_key_and_every_operator_block_must_match() -> None:
    principal = who(
        policy(
            allow(
                "s3:GetObject", Condition={"StringEquals": {"k:a": "1", "k:b": "2"}, "Bool": {"k:c": "true"}}
            )
        )
    )
    assert evaluate(principal, Request("s3:GetObject", "*", {"k:a": "1", "k:b": "2", "k:c": True}))
    assert not evaluate(principal, Request("s3:GetObject", "*", {"k:a": "1", "k:b": "2", "k:c": False}))


def test_condition_key_names_are_case_insensitive() -> None:
    principal = who(
        policy(allow("s3:GetObject", Condition={"StringEquals": {"AWS:PrincipalTag/Team": "ml"}}))
    )
    assert evaluate(Principal(ROLE, principal.policies, tags={"team": "ml"}), Request("s3:GetObject", "*"))


def test_policy_variables_resolve_from_the_principals_tags() -> None:
    boundary = policy(allow("s3:GetObject", "arn:aws:s3:::data-${aws:PrincipalTag/project}/*"))
    principal = who(policy(allow("s3:*")), boundary=boundary, tags={"project": "p-1"})
    assert evaluate(principal, Request("s3:GetObject", "arn:aws:s3:::data-p-1/k"))
    assert not evaluate(principal, Request("s3:GetObject", "arn:aws:s3:::data-p-2/k"))


def test_a_variable_without_value_matches_nothing_unless_it_has_a_default() -> None:
    untagged = who(policy(allow("s3:GetObject", "arn:aws:s3:::data-${aws:PrincipalTag/project}/*")))
    assert not evaluate(untagged, Request("s3:GetObject", "arn:aws:s3:::data-/k"))
    defaulted = who(
        policy(allow("s3:GetObject", "arn:aws:s3:::data-${aws:PrincipalTag/project, 'shared'}/*"))
    )
    assert evaluate(defaulted, Request("s3:GetObject", "arn:aws:s3:::data-shared/k"))


def test_a_variable_value_is_literal_never_a_wildcard() -> None:
    principal = who(
        policy(allow("s3:GetObject", "arn:aws:s3:::data-${aws:PrincipalTag/project}/*")),
        tags={"project": "*"},
    )
    assert not evaluate(principal, Request("s3:GetObject", "arn:aws:s3:::data-anything/k"))
    assert evaluate(principal, Request("s3:GetObject", "arn:aws:s3:::data-*/k"))


def test_a_resource_policy_deny_applies_to_every_principal() -> None:
    bucket = policy(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/app/*"}},
        }
    )
    outsider = Principal("arn:aws:iam::111122223333:role/studio", (policy(allow("s3:*")),))
    insider = who(policy(allow("s3:*")))
    assert not evaluate(outsider, Request("s3:GetObject", "arn:aws:s3:::b/k"), bucket)
    assert evaluate(insider, Request("s3:GetObject", "arn:aws:s3:::b/k"), bucket)


def test_a_resource_policy_naming_the_principal_grants_in_the_same_account() -> None:
    queue = policy(
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "sqs:SendMessage", "Resource": "*"}
    )
    assert evaluate(who(), Request("sqs:SendMessage", "arn:aws:sqs:us-east-1:111122223333:q"), queue)


def test_trust_policies_match_the_federated_principal_and_its_claims() -> None:
    trust = policy(
        {
            "Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/gitlab.example.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    "gitlab.example.com:aud": "sts.amazonaws.com",
                    "gitlab.example.com:sub": "project_path:g/d:ref_type:branch:ref:main",
                }
            },
        }
    )
    provider = "arn:aws:iam::1:oidc-provider/gitlab.example.com"
    good = {
        "gitlab.example.com:aud": "sts.amazonaws.com",
        "gitlab.example.com:sub": "project_path:g/d:ref_type:branch:ref:main",
    }
    assert evaluate_trust(trust, provider, "sts:AssumeRoleWithWebIdentity", good)
    assert not evaluate_trust(
        trust, "arn:aws:iam::1:oidc-provider/other", "sts:AssumeRoleWithWebIdentity", good
    )
    assert not evaluate_trust(
        trust,
        provider,
        "sts:AssumeRoleWithWebIdentity",
        {**good, "gitlab.example.com:sub": "project_path:g/d:ref_type:branch:ref:dev"},
    )
    assert not evaluate_trust(trust, provider, "sts:TagSession", good)


def test_service_principals_need_the_resource_policy() -> None:
    function = policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "lambda:InvokeFunction",
            "Resource": "arn:aws:lambda:us-east-1:1:function:f",
            "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:events:us-east-1:1:rule/r"}},
        }
    )
    request = Request(
        "lambda:InvokeFunction",
        "arn:aws:lambda:us-east-1:1:function:f",
        {"aws:SourceArn": "arn:aws:events:us-east-1:1:rule/r"},
    )
    assert evaluate_service(function, "events.amazonaws.com", request)
    assert not evaluate_service(function, "sns.amazonaws.com", request)
    assert not evaluate_service(function, "events.amazonaws.com", Request(request.action, request.resource))


def test_unreadable_policies_are_an_error_not_a_decision() -> None:
    with pytest.raises(PolicyError, match="Effect"):
        evaluate(who(policy({"Action": "s3:*", "Resource": "*"})), Request("s3:GetObject", "*"))
    with pytest.raises(PolicyError, match="unsupported condition operator"):
        evaluate(
            who(policy(allow("s3:*", Condition={"DateGreaterThan": {"aws:CurrentTime": "2020"}}))),
            Request("s3:GetObject", "*", {"aws:CurrentTime": "2021"}),
        )
