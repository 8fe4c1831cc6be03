"""Environment of the trigger Lambda, parsed once per container."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlops_common.config import Settings
from mlops_common.errors import ConfigError

_SOURCE = "environment variable"


@dataclass(frozen=True)
class TriggerConfig:
    gitlab_url: str
    token_secret_id: str
    ca_bundle_uri: str
    deploy_project_id: int
    deploy_ref: str
    model_package_group: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TriggerConfig:
        s = Settings(env, _SOURCE)
        project = s.required("DEPLOY_PROJECT_ID")
        if not project.isdigit():
            raise ConfigError(
                f"{_SOURCE} DEPLOY_PROJECT_ID is {project!r}: expected the numeric GitLab project id"
            )
        return cls(
            gitlab_url=s.https_url("GITLAB_URL"),
            token_secret_id=s.required("GITLAB_TOKEN_SECRET_ARN"),
            ca_bundle_uri=s.s3_uri("GITLAB_CA_BUNDLE_S3_URI"),
            deploy_project_id=int(project),
            deploy_ref=s.optional("DEPLOY_REF", "main"),
            model_package_group=s.required("MODEL_PACKAGE_GROUP_NAME"),
        )
