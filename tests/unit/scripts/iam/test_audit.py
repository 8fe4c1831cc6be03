"""scripts/iam/audit.py: recorded calls judged against the installation the templates define."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.iam.audit import StackSnapshot, judge, load_snapshots, save_snapshots
from scripts.iam.bundle import Installation, PlatformSpec, ProjectSpec, build_installation
from scripts.iam.requests import Lookups
from scripts.sandbox.iam_recorder import Call

ACCOUNT, REGION = "123456789012", "us-east-1"
A = ProjectSpec("foo", "p-aaaaaaaaaaaa")
STAGING = f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops/gitlab-mlops-{A.project_id}-ci-staging"
PROD = f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops/gitlab-mlops-{A.project_id}-ci-prod"
DEPLOY_SUB = "project_path:ml-team/foo-model-deploy:ref_type:branch:ref:"


@pytest.fixture(scope="module")
def world() -> Installation:
    return build_installation(PlatformSpec(), [A])


def invoke(principal: str, stage: str) -> Call:
    endpoint = f"{A.name}-{A.project_id}-{stage}"
    return Call("sagemaker", "InvokeEndpoint", principal, params={"EndpointName": endpoint})


def test_each_call_of_a_product_principal_is_judged_and_a_denial_names_its_reason(
    world: Installation,
) -> None:
    audit = judge([invoke(STAGING, "staging"), invoke(STAGING, "prod")], world, Lookups())
    assert [(v.resource.rsplit("/", 1)[-1], v.allowed) for v in audit.verdicts] == [
        (f"{A.name}-{A.project_id}-staging", True),
        (f"{A.name}-{A.project_id}-prod", False),
    ]
    (denied,) = audit.denied
    assert denied.principal == STAGING and denied.action == "sagemaker:InvokeEndpoint"
    assert "1 denied" in audit.summary()


def test_calls_of_principals_the_bundle_does_not_define_are_not_judged(world: Installation) -> None:
    audit = judge(
        [invoke("", "prod"), invoke(f"arn:aws:iam::{ACCOUNT}:role/someone-else", "prod")], world, Lookups()
    )
    assert audit.verdicts == () and audit.unresolved == ()


def test_web_identity_calls_are_judged_against_the_role_trust_with_the_token_claims(
    world: Installation,
) -> None:
    def assume(ref: str) -> Call:
        return Call("sts", "AssumeRoleWithWebIdentity", "", params={"RoleArn": PROD},
                    claims={"sub": DEPLOY_SUB + ref, "aud": "sts.amazonaws.com"})  # fmt: skip

    audit = judge([assume("main"), assume("feature")], world, Lookups())
    assert [v.allowed for v in audit.verdicts] == [True, False]
    assert audit.verdicts[1].principal == f"token {DEPLOY_SUB}feature"


def test_a_call_whose_resource_cannot_be_built_is_reported_unresolved(world: Installation) -> None:
    audit = judge([Call("sagemaker", "DescribeEndpoint", STAGING, params={})], world, Lookups())
    assert audit.verdicts == () and len(audit.unresolved) == 1 and STAGING in audit.unresolved[0]


def test_snapshots_round_trip_and_a_later_snapshot_of_a_stack_replaces_the_earlier(tmp_path: Path) -> None:
    path = tmp_path / "iam-model.json"
    first = StackSnapshot("SP-foo", "Resources: {}", {"A": "1"}, {}, {})
    other = StackSnapshot("bootstrap", "Resources: {}", {}, {"Bucket": "b"}, {})
    save_snapshots(path, [first, other])
    save_snapshots(path, [StackSnapshot("SP-foo", "Resources: {}", {"A": "2"}, {}, {})])
    loaded = {s.name: s for s in load_snapshots(path)}
    assert set(loaded) == {"SP-foo", "bootstrap"}
    assert loaded["SP-foo"].parameters == {"A": "2"} and loaded["bootstrap"].physical_ids == {"Bucket": "b"}
    assert load_snapshots(tmp_path / "missing.json") == []
