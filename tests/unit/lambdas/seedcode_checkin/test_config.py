"""Resource properties -> frozen config; every bad value becomes a ConfigError a human can act on."""

from __future__ import annotations

from typing import Any

import pytest
from mlops_common.errors import ConfigError
from seedcode_checkin.config import CheckinConfig, RepoTarget

from tests.unit.lambdas.helpers import load_event


def props(**changes: Any) -> dict[str, Any]:
    values = dict(load_event("cfn_create")["ResourceProperties"])
    values.update(changes)
    return values


def test_fixture_properties_parse() -> None:
    cfg = CheckinConfig.from_properties(props())
    assert cfg.target.gitlab_group == "ml-team"
    assert cfg.target.deletion_policy == "retain"
    assert cfg.ci_auth_mode == "oidc"
    assert [c.duty for c in cfg.credentials] == ["build", "staging", "prod"]
    assert cfg.duty("prod").role_arn.endswith(":role/gitlab-mlops/gitlab-mlops-p-abc123def456-ci-prod")
    assert all(c.access_key_secret_id == "" for c in cfg.credentials)
    assert cfg.trigger_secret_id.endswith(":secret:gitlab-mlops/p-abc123def456/deploy-trigger-XyZ123")


def test_defaults_for_optional_properties() -> None:
    values = props()
    for key in ("GitLabGroup", "DeletionPolicy", "DefaultBranch", "GitLabCaBundleS3Uri", "CiAuthMode"):
        values.pop(key)
    target = RepoTarget.from_properties(values)
    assert (target.gitlab_group, target.deletion_policy, target.default_branch, target.ca_bundle_uri) == (
        "",
        "retain",
        "main",
        "",
    )


def test_access_key_mode_needs_a_key_secret_per_duty() -> None:
    with pytest.raises(ConfigError, match="CiBuildAccessKeySecretArn is missing or empty"):
        CheckinConfig.from_properties(props(CiAuthMode="access-keys"))
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-mlops/p-1/ci-{}-access-key-AbCdEf"
    cfg = CheckinConfig.from_properties(
        props(
            CiAuthMode="access-keys",
            **{f"Ci{d}AccessKeySecretArn": arn.format(d) for d in ("Build", "Staging", "Prod")},
        )
    )
    assert (
        cfg.duty("staging").access_key_secret_id == arn.format("Staging")
        and cfg.duty("staging").role_arn == ""
    )


def test_secret_properties_must_be_secret_arns() -> None:
    with pytest.raises(
        ConfigError, match="GitLabTokenSecretArn is 'gitlab-token': expected a Secrets Manager secret ARN"
    ):
        CheckinConfig.from_properties(props(GitLabTokenSecretArn="gitlab-token"))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        (
            {"GitLabUrl": "http://gitlab.example.com"},
            "GitLabUrl is 'http://gitlab.example.com': it must be an https",
        ),
        ({"ModelBuildRepositoryName": "-bad"}, "ModelBuildRepositoryName is '-bad'"),
        ({"ModelBuildRepositoryName": "x.git"}, "ModelBuildRepositoryName"),
        ({"ModelDeployRepositoryName": "a b"}, "ModelDeployRepositoryName"),
        ({"ModelDeployRepositoryName": "Abalone-Model-Build"}, "give the two repositories different names"),
        ({"DeletionPolicy": "purge"}, "DeletionPolicy is 'purge': expected one of retain, archive, delete"),
        ({"CiAuthMode": "password"}, "CiAuthMode is 'password'"),
        ({"GitLabGroup": "ml team"}, "GitLabGroup is 'ml team'"),
        ({"DefaultBranch": "a..b"}, "DefaultBranch"),
        ({"GitLabCaBundleS3Uri": "https://x/ca.pem"}, "expected s3://bucket/key"),
        ({"ProjectName": ""}, "ProjectName is missing or empty"),
    ],
)
def test_bad_properties_are_explained(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        CheckinConfig.from_properties(props(**changes))


def test_group_may_be_a_path_a_subgroup_or_an_id() -> None:
    for group in ("ml", "ml/team", "ml/team/sub", "42"):
        assert RepoTarget.from_properties(props(GitLabGroup=group)).gitlab_group == group
