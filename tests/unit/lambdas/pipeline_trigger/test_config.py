"""Trigger environment parsing."""

from __future__ import annotations

import pytest
from mlops_common.errors import ConfigError
from pipeline_trigger.config import TriggerConfig

ENV = {
    "GITLAB_URL": "https://gitlab.example.com/",
    "TRIGGER_TOKEN_SECRET_ARN": (
        "arn:aws:secretsmanager:us-east-1:1:secret:gitlab-mlops/p-1/deploy-trigger-AbCdEf"
    ),
    "GITLAB_CA_BUNDLE_S3_URI": "",
    "DEPLOY_PROJECT_ID": "12",
    "MODEL_PACKAGE_GROUP_NAME": "abalone-p-1",
}


def test_environment_parses_with_defaults() -> None:
    cfg = TriggerConfig.from_env(ENV)
    assert (cfg.gitlab_url, cfg.deploy_project_id, cfg.deploy_ref) == (
        "https://gitlab.example.com",
        12,
        "main",
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"DEPLOY_PROJECT_ID": "ml/deploy"}, "expected the numeric GitLab project id"),
        ({"DEPLOY_PROJECT_ID": ""}, "DEPLOY_PROJECT_ID is missing"),
        ({"GITLAB_URL": "http://gitlab.example.com"}, "must be an https:// URL"),
        ({"MODEL_PACKAGE_GROUP_NAME": ""}, "MODEL_PACKAGE_GROUP_NAME is missing"),
    ],
)
def test_bad_environment_is_explained(changes: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        TriggerConfig.from_env({**ENV, **changes})
