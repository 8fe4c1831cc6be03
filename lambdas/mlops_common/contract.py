"""Names shared across the bundle: template, Lambdas, seed repositories' CI, sandbox.

Each name is defined here once. The seed repositories cannot import this module (they live in the
user's GitLab), so the bundle's tests check that their `.gitlab-ci.yml` and scripts use exactly these.
"""

from __future__ import annotations

import re
from typing import Final

# --- CI/CD variables the seed check-in sets on BOTH GitLab projects -------------------------------
VAR_PROJECT_NAME: Final = "SAGEMAKER_PROJECT_NAME"
VAR_PROJECT_ID: Final = "SAGEMAKER_PROJECT_ID"
VAR_PROJECT_ARN: Final = "SAGEMAKER_PROJECT_ARN"
VAR_REGION: Final = "AWS_DEFAULT_REGION"
VAR_REGION_ALIAS: Final = "AWS_REGION"
VAR_ARTIFACT_BUCKET: Final = "ARTIFACT_BUCKET"
VAR_MODEL_PACKAGE_GROUP: Final = "MODEL_PACKAGE_GROUP_NAME"
VAR_SAGEMAKER_EXECUTION_ROLE: Final = "SAGEMAKER_EXECUTION_ROLE_ARN"
VAR_AUTH_MODE: Final = "AWS_AUTH_MODE"
# OIDC mode: boto3 assumes this role by itself from AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE. The
# build repository's is the build role, the deploy repository's the staging role; the deploy
# repository's production job uses VAR_CI_PROD_ROLE, a role that trusts only its default branch.
VAR_CI_ROLE: Final = "AWS_ROLE_ARN"
VAR_CI_PROD_ROLE: Final = "AWS_PROD_ROLE_ARN"
VAR_WEB_IDENTITY_TOKEN_FILE: Final = "AWS_WEB_IDENTITY_TOKEN_FILE"  # noqa: S105 - a variable name, not a secret
# Access-key mode only; always masked and protected (GitLab passes them to protected branches only).
VAR_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
VAR_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name, not a secret
VAR_PROD_ACCESS_KEY_ID: Final = "AWS_PROD_ACCESS_KEY_ID"
VAR_PROD_SECRET_ACCESS_KEY: Final = "AWS_PROD_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name
SECRET_VARIABLES: Final = frozenset(
    {VAR_ACCESS_KEY_ID, VAR_SECRET_ACCESS_KEY, VAR_PROD_ACCESS_KEY_ID, VAR_PROD_SECRET_ACCESS_KEY}
)
# The deploy repository's CI picks its credentials by the duty of each job (staging or production).
VAR_CI_DUTY: Final = "AWS_CI_DUTY"
CI_DUTIES: Final = ("build", "staging", "prod")

AUTH_MODE_OIDC: Final = "oidc"
AUTH_MODE_ACCESS_KEYS: Final = "access-keys"
AUTH_MODES: Final = (AUTH_MODE_OIDC, AUTH_MODE_ACCESS_KEYS)

# The `id_tokens:` entry seed CI jobs request, and the audience the IAM OIDC provider trusts.
CI_ID_TOKEN_NAME: Final = "AWS_ID_TOKEN"  # noqa: S105 - a variable name, not a secret
OIDC_AUDIENCE: Final = "sts.amazonaws.com"

# --- The approval trigger Lambda's environment -----------------------------------------------------
ENV_GITLAB_URL: Final = "GITLAB_URL"
ENV_TRIGGER_TOKEN_SECRET: Final = "TRIGGER_TOKEN_SECRET_ARN"  # noqa: S105 - a variable name
ENV_GITLAB_CA_BUNDLE: Final = "GITLAB_CA_BUNDLE_S3_URI"
ENV_DEPLOY_PROJECT_ID: Final = "DEPLOY_PROJECT_ID"
ENV_DEPLOY_REF: Final = "DEPLOY_REF"
ENV_MODEL_PACKAGE_GROUP: Final = "MODEL_PACKAGE_GROUP_NAME"
ENV_LOG_LEVEL: Final = "LOG_LEVEL"
# The production deploy stack (deploy_stack_name(..., "prod")): its ModelPackageArn output is what is live.
ENV_PROD_STACK_NAME: Final = "PROD_DEPLOY_STACK_NAME"
TRIGGER_ENVIRONMENT: Final = (
    ENV_GITLAB_URL,
    ENV_TRIGGER_TOKEN_SECRET,
    ENV_GITLAB_CA_BUNDLE,
    ENV_DEPLOY_PROJECT_ID,
    ENV_DEPLOY_REF,
    ENV_MODEL_PACKAGE_GROUP,
    ENV_PROD_STACK_NAME,
    ENV_LOG_LEVEL,
)
# What the seed check-in stores in the deploy trigger secret (JSON) and the trigger reads back.
TRIGGER_SECRET_KEYS: Final = (
    "token",
    "trigger_id",
    "project_id",
    "gitlab_url",
    "read_token",
    "read_token_id",
    "read_token_expires",
)

# --- Variables the approval trigger passes to the model-deploy pipeline ---------------------------
PIPELINE_VAR_MODEL_PACKAGE_ARN: Final = "MODEL_PACKAGE_ARN"
PIPELINE_VAR_MODEL_PACKAGE_GROUP: Final = "MODEL_PACKAGE_GROUP_NAME"
PIPELINE_VAR_APPROVAL_STATUS: Final = "MODEL_APPROVAL_STATUS"
# The pipeline's name, one per model package state change: the deploy repository's .gitlab-ci.yml must
# name its pipelines from it (`workflow: name: $DEPLOY_PIPELINE_NAME`); the trigger looks it up (list
# pipelines, `name=`) before starting one, so a repeated event starts nothing new.
PIPELINE_VAR_PIPELINE_NAME: Final = "DEPLOY_PIPELINE_NAME"
# Why the pipeline runs when it is not a plain approval (a rollback after a rejection).
PIPELINE_VAR_DEPLOY_REASON: Final = "DEPLOY_REASON"

# --- Sandbox / local execution switches (never set on real projects) ------------------------------
# model-build: "local" runs the same pipeline definition on the CI machine (no SageMaker jobs).
VAR_PIPELINE_RUN_MODE: Final = "PIPELINE_RUN_MODE"
# model-build: input data override (s3:// URI or a path on the runner) passed as --input-data.
VAR_PIPELINE_INPUT_DATA: Final = "PIPELINE_INPUT_DATA"
# Any AWS endpoint override (moto in the sandbox); boto3 and the AWS CLI honour it natively.
VAR_AWS_ENDPOINT_URL: Final = "AWS_ENDPOINT_URL"

# --- Ownership marker on GitLab projects this bundle creates --------------------------------------
OWNER_TOPIC_PREFIX: Final = "sagemaker-project-"

# --- Model registry <-> model-deploy data contract -------------------------------------------------
# The model package's CustomerMetadataProperties key holding the S3 URI of held-out rows (CSV, no
# header, target first) that the staging test sends to the endpoint.
METADATA_TEST_DATA_URI: Final = "TestDataS3Uri"
# The package's ModelMetrics.ModelQuality.Statistics.S3Uri points at evaluation.json:
# {"regression_metrics": {"mse": {"value": .., "standard_deviation": ..}, ...}}
EVALUATION_METRICS_KEY: Final = "regression_metrics"
# Provenance the model-build pipeline records in CustomerMetadataProperties (also MetadataProperties
# CommitId/Repository/GeneratedBy); "none" where unknown.
METADATA_GIT_COMMIT: Final = "GitCommit"
METADATA_GIT_BRANCH: Final = "GitBranch"
METADATA_PIPELINE_URL: Final = "GitLabPipelineUrl"
METADATA_MERGE_REQUEST_URL: Final = "GitLabMergeRequestUrl"
METADATA_UNKNOWN: Final = "none"
# The model-deploy pipeline tags the version each stage serves deployed-to:<stage> (value: its pipeline URL).
TAG_DEPLOYED_PREFIX: Final = "deployed-to:"

# --- Merge request note -----------------------------------------------------------------------------
# Masked (not protected) CI/CD variable of the model-build project: a project access token (Reporter,
# api scope) that posts the model note on merge requests. Set by the user (the sandbox sets one).
VAR_MR_NOTE_TOKEN: Final = "MR_NOTE_TOKEN"  # noqa: S105 - a variable name, not a secret

# --- What the seed check-in custom resource answers (GetAtt SeedRepositories.<key>) ---------------
CHECKIN_DATA_TOKEN_WARNING: Final = "GitLabTokenWarning"  # noqa: S105 - a key name, not a secret
CHECKIN_DATA_KEYS: Final = frozenset(
    {
        "ModelBuildProjectId",
        "ModelBuildPath",
        "ModelBuildCloneUrl",
        "ModelDeployProjectId",
        "ModelDeployPath",
        "ModelDeployCloneUrl",
        CHECKIN_DATA_TOKEN_WARNING,
    }
)

# --- CI jobs other parts start, play or read (the seeds' .gitlab-ci.yml define them) ----------------
BUILD_JOB_RUN_PIPELINE: Final = "run-pipeline"
DEPLOY_JOB_BUILD: Final = "build"
# One job deploys and tests staging under the staging lock; production waits behind its manual gate.
DEPLOY_JOB_STAGING: Final = "staging"
DEPLOY_JOB_PROD: Final = "deploy-prod"
STAGING_TEST_REPORT: Final = "staging-test-report.xml"

# --- SageMaker events -----------------------------------------------------------------------------
EVENT_SOURCE: Final = "aws.sagemaker"
EVENT_DETAIL_TYPE: Final = "SageMaker Model Package State Change"
APPROVED: Final = "Approved"
REJECTED: Final = "Rejected"
PENDING: Final = "PendingManualApproval"

# --- Naming ---------------------------------------------------------------------------------------
# Every project resource is named after the project's id, never after its name alone: IAM policies
# scope each project's principals to `*-<project-id>-<suffix>` or `gitlab-mlops-<project-id>-*`, and a
# SageMaker project id (`p-` and letters/digits, no other hyphen) can never be a prefix of another one.
STAGES: Final = ("staging", "prod")
PLATFORM_PREFIX: Final = "gitlab-mlops"
# IAM path of every principal and managed policy a project creates (the launch role may act only there).
PROJECT_IAM_PATH: Final = "/gitlab-mlops/"
# IAM path of what bootstrap creates (boundary, launch role): no project principal can touch it.
PLATFORM_IAM_PATH: Final = "/gitlab-mlops-platform/"
BOUNDARY_POLICY_NAME: Final = "gitlab-mlops-project-boundary"
# The tag every project principal carries; the permissions boundary reads it as a policy variable.
PROJECT_TAG: Final = "gitlab-mlops-project-id"
# Secrets Manager path of the platform's secrets: no project principal may touch it.
PLATFORM_SECRET_PREFIX: Final = "gitlab-mlops-platform/"  # noqa: S105 - a name prefix, not a secret
# The platform's GitLab token, readable by the seed check-in alone, and the tag on that secret naming
# the only GitLab server the token may be sent to.
TOKEN_SECRET_NAME: Final = PLATFORM_SECRET_PREFIX + "gitlab-token"
TOKEN_SERVER_TAG: Final = "gitlab-mlops:gitlab-url"  # noqa: S105 - a tag key, not a secret
# What model-build registers, and the CI job that trains it.
BUILD_PIPELINE_SUFFIX: Final = "model-build"
_PROJECT_ID = re.compile(r"^p-[a-z0-9]{1,18}$")
_GROUP_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
MAX_GROUP_NAME: Final = 63
MAX_ENDPOINT_NAME: Final = 63


# Where bootstrap publishes the S3 project template in the bundle bucket (the Studio domain's
# sagemaker:projectS3TemplatesLocation tag points at the prefix).
PROJECT_TEMPLATES_PREFIX: Final = "project-templates"
S3_TEMPLATE_NAME: Final = "gitlab-mlops.yml"
PUBLISHED_TEMPLATE_KEY: Final = f"{PROJECT_TEMPLATES_PREFIX}/{S3_TEMPLATE_NAME}"


def check_project_id(project_id: str) -> str:
    """A SageMaker project id: `p-` then lowercase letters and digits (what SageMaker issues)."""
    if not _PROJECT_ID.match(project_id):
        raise ValueError(
            f"project id {project_id!r} is not a SageMaker project id (p- followed by up to 18 lowercase "
            "letters or digits)"
        )
    return project_id


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return stage


def model_package_group_name(project_name: str, project_id: str) -> str:
    """`<project-name>-<project-id>`, the group SageMaker Studio shows for the project."""
    name = f"{project_name}-{project_id}"
    if len(name) > MAX_GROUP_NAME or not _GROUP_NAME.match(name):
        raise ValueError(
            f"model package group name {name!r} is invalid: at most {MAX_GROUP_NAME} characters of "
            "letters, digits and single hyphens; choose a shorter project name"
        )
    return name


def bundle_bucket_name(account: str, region: str) -> str:
    """The bundle bucket templates/bootstrap.yml creates (Lambda zips, seeds, the project template)."""
    return f"{PLATFORM_PREFIX}-bundle-{account}-{region}"


def resource_name(project_id: str, purpose: str) -> str:
    """`gitlab-mlops-<project-id>-<purpose>`: roles, functions, queues, rules, policies of a project."""
    return f"{PLATFORM_PREFIX}-{check_project_id(project_id)}-{purpose}"


def artifacts_bucket_name(project_id: str, account: str, region: str) -> str:
    """The project's bucket. No `sagemaker` in it: AWS's SageMaker managed policies open such buckets."""
    return f"{PLATFORM_PREFIX}-{check_project_id(project_id)}-{account}-{region}"


def project_secret_prefix(project_id: str) -> str:
    """Secrets Manager name prefix of a project's own secrets."""
    return f"{PLATFORM_PREFIX}/{check_project_id(project_id)}/"


def trigger_secret_name(project_id: str) -> str:
    """The deploy project's pipeline trigger token, written by the check-in, read by the trigger."""
    return project_secret_prefix(project_id) + "deploy-trigger"


def endpoint_name(project_name: str, project_id: str, stage: str) -> str:
    """`<project-name>-<project-id>-<stage>`, the endpoint each deploy stage creates."""
    name = f"{project_name}-{check_project_id(project_id)}-{check_stage(stage)}"
    if len(name) > MAX_ENDPOINT_NAME:
        raise ValueError(
            f"endpoint name {name!r} is longer than {MAX_ENDPOINT_NAME}: shorten the project name"
        )
    return name


def deploy_stack_name(project_name: str, project_id: str, stage: str) -> str:
    """The CloudFormation stack the model-deploy CI keeps for one stage."""
    return f"{project_name}-{check_project_id(project_id)}-deploy-{check_stage(stage)}"


# The deploy stack output naming the model package a stage serves.
DEPLOY_STACK_PACKAGE_OUTPUT: Final = "ModelPackageArn"


def build_pipeline_name(project_name: str, project_id: str) -> str:
    """The SageMaker pipeline the model-build CI creates and runs."""
    return f"{project_name}-{check_project_id(project_id)}-{BUILD_PIPELINE_SUFFIX}"


def owner_topic(project_id: str) -> str:
    """The GitLab topic that marks a repository as created by this SageMaker project."""
    return f"{OWNER_TOPIC_PREFIX}{project_id}"
