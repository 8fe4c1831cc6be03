"""Resource properties of Custom::GitLabSeedRepositories, parsed once per event into frozen dataclasses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mlops_common import contract
from mlops_common.config import Settings
from mlops_common.errors import ConfigError

RETAIN, ARCHIVE, DELETE = "retain", "archive", "delete"
DELETION_POLICIES = (RETAIN, ARCHIVE, DELETE)
_SOURCE = "resource property"
# GitLab project paths: letters, digits, '_', '-', '.'; start with a letter or digit; no .git/.atom end.
_REPO_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
# The template's GitLabGroup AllowedPattern, so a value passes both or neither.
_GROUP = re.compile(r"^(\d+|[a-zA-Z0-9][a-zA-Z0-9_.-]*(/[a-zA-Z0-9][a-zA-Z0-9_.-]*)*)$")
_BRANCH = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_./-]{0,99}$")


def _repo_name(settings: Settings, key: str) -> str:
    value = settings.required(key)
    if not _REPO_NAME.match(value) or value.endswith((".git", ".atom")) or ".." in value:
        raise ConfigError(
            f"{_SOURCE} {key} is {value!r}: use letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class RepoTarget:
    """Where the repositories live and what happens to them on Delete: all that Delete needs."""

    gitlab_url: str
    gitlab_group: str  # full path or numeric id; "" = the token owner's namespace
    token_secret_id: str
    ca_bundle_uri: str
    build_repo: str
    deploy_repo: str
    project_id: str
    deletion_policy: str
    default_branch: str
    token_warning_days: int = 30

    @property
    def read_token_name(self) -> str:
        """The read-only project access token the approval trigger looks pipelines up with."""
        return f"SageMaker project {self.project_id} approval trigger (read pipelines)"

    @property
    def trigger_description(self) -> str:
        """How the deploy repository's pipeline trigger of this project is recognised in GitLab."""
        return f"SageMaker project {self.project_id} approval trigger"

    @classmethod
    def from_properties(cls, props: Mapping[str, object]) -> RepoTarget:
        s = Settings(props, _SOURCE)
        group = s.optional("GitLabGroup")
        if group and not _GROUP.match(group):
            raise ConfigError(
                f"{_SOURCE} GitLabGroup is {group!r}: give a group path like 'ml/team' or its id"
            )
        branch = s.optional("DefaultBranch", "main")
        if not _BRANCH.match(branch) or ".." in branch or branch.endswith((".lock", "/")):
            raise ConfigError(f"{_SOURCE} DefaultBranch is {branch!r}: not a valid branch name")
        target = cls(
            gitlab_url=s.https_url("GitLabUrl"),
            gitlab_group=group,
            token_secret_id=_secret_arn(s, "GitLabTokenSecretArn"),
            ca_bundle_uri=s.s3_uri("GitLabCaBundleS3Uri"),
            build_repo=_repo_name(s, "ModelBuildRepositoryName"),
            deploy_repo=_repo_name(s, "ModelDeployRepositoryName"),
            project_id=s.required("ProjectId"),
            deletion_policy=s.choice("DeletionPolicy", DELETION_POLICIES, RETAIN),
            default_branch=branch,
            token_warning_days=_days(s, "TokenExpiryWarningDays", 30),
        )
        if target.build_repo.lower() == target.deploy_repo.lower():
            # GitLab paths are unique case-insensitively: 'Models' and 'models' are one project.
            names = (
                f"both {target.build_repo!r}"
                if target.build_repo == target.deploy_repo
                else f"{target.build_repo!r} and {target.deploy_repo!r}, one GitLab path (case is ignored)"
            )
            raise ConfigError(
                f"ModelBuildRepositoryName and ModelDeployRepositoryName are {names}: "
                "give the two repositories different names"
            )
        return target


def _days(s: Settings, key: str, default: int) -> int:
    value = s.optional(key, str(default))
    if not value.isdigit() or int(value) > 365:
        raise ConfigError(f"{_SOURCE} {key} is {value!r}: give a number of days from 0 to 365")
    return int(value)


def _secret_arn(s: Settings, key: str) -> str:
    value = s.required(key)
    if not _SECRET_ARN.match(value):
        raise ConfigError(f"{_SOURCE} {key} is {value!r}: expected a Secrets Manager secret ARN")
    return value


@dataclass(frozen=True)
class DutyCredentials:
    """How GitLab CI gets AWS credentials for one duty (build, staging, prod): a role or a key secret."""

    duty: str
    role_arn: str  # oidc
    access_key_secret_id: str  # access-keys


@dataclass(frozen=True)
class CheckinConfig:
    """Everything Create and Update need."""

    target: RepoTarget
    project_name: str
    project_arn: str
    region: str
    seed_bucket: str
    build_seed_key: str
    deploy_seed_key: str
    artifact_bucket: str
    model_package_group: str
    execution_role_arn: str
    trigger_secret_id: str
    ci_auth_mode: str
    credentials: tuple[DutyCredentials, ...]

    def duty(self, name: str) -> DutyCredentials:
        return next(c for c in self.credentials if c.duty == name)

    @classmethod
    def from_properties(cls, props: Mapping[str, object]) -> CheckinConfig:
        s = Settings(props, _SOURCE)
        target = RepoTarget.from_properties(props)
        mode = s.choice("CiAuthMode", contract.AUTH_MODES, contract.AUTH_MODE_OIDC)
        credentials = []
        for duty in contract.CI_DUTIES:
            label = duty.capitalize()
            if mode == contract.AUTH_MODE_OIDC:
                credentials.append(DutyCredentials(duty, s.required(f"Ci{label}RoleArn"), ""))
            else:
                credentials.append(DutyCredentials(duty, "", _secret_arn(s, f"Ci{label}AccessKeySecretArn")))
        return cls(
            target=target,
            project_name=s.required("ProjectName"),
            project_arn=s.required("ProjectArn"),
            region=s.required("Region"),
            seed_bucket=s.required("SeedBucket"),
            build_seed_key=s.required("ModelBuildSeedKey"),
            deploy_seed_key=s.required("ModelDeploySeedKey"),
            artifact_bucket=s.required("ArtifactBucket"),
            model_package_group=s.required("ModelPackageGroupName"),
            execution_role_arn=s.required("SageMakerExecutionRoleArn"),
            trigger_secret_id=_secret_arn(s, "DeployTriggerSecretArn"),
            ci_auth_mode=mode,
            credentials=tuple(credentials),
        )
