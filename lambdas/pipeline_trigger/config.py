"""Environment of the trigger Lambda, parsed once per container."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlops_common import contract
from mlops_common.config import Settings
from mlops_common.errors import ConfigError

_SOURCE = "environment variable"


@dataclass(frozen=True)
class TriggerConfig:
    gitlab_url: str
    trigger_secret_id: str
    ca_bundle_uri: str
    deploy_project_id: int
    deploy_ref: str
    model_package_group: str
    prod_stack_name: str = ""  # "" = no rollback on rejection

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TriggerConfig:
        s = Settings(env, _SOURCE)
        project = s.required(contract.ENV_DEPLOY_PROJECT_ID)
        if not project.isdigit():
            raise ConfigError(
                f"{_SOURCE} {contract.ENV_DEPLOY_PROJECT_ID} is {project!r}: expected the numeric GitLab "
                "project id"
            )
        return cls(
            gitlab_url=s.https_url(contract.ENV_GITLAB_URL),
            trigger_secret_id=s.required(contract.ENV_TRIGGER_TOKEN_SECRET),
            ca_bundle_uri=s.s3_uri(contract.ENV_GITLAB_CA_BUNDLE),
            deploy_project_id=int(project),
            deploy_ref=s.optional(contract.ENV_DEPLOY_REF, "main"),
            model_package_group=s.required(contract.ENV_MODEL_PACKAGE_GROUP),
            prod_stack_name=s.optional(contract.ENV_PROD_STACK_NAME),
        )
