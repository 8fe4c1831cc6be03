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
# OIDC mode: boto3 assumes this role by itself from AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE.
VAR_CI_ROLE: Final = "AWS_ROLE_ARN"
VAR_WEB_IDENTITY_TOKEN_FILE: Final = "AWS_WEB_IDENTITY_TOKEN_FILE"  # noqa: S105 - a variable name, not a secret
# Access-key mode only; always masked and protected.
VAR_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
VAR_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name, not a secret
SECRET_VARIABLES: Final = frozenset({VAR_ACCESS_KEY_ID, VAR_SECRET_ACCESS_KEY})

AUTH_MODE_OIDC: Final = "oidc"
AUTH_MODE_ACCESS_KEYS: Final = "access-keys"
AUTH_MODES: Final = (AUTH_MODE_OIDC, AUTH_MODE_ACCESS_KEYS)

# The `id_tokens:` entry seed CI jobs request, and the audience the IAM OIDC provider trusts.
CI_ID_TOKEN_NAME: Final = "AWS_ID_TOKEN"  # noqa: S105 - a variable name, not a secret
OIDC_AUDIENCE: Final = "sts.amazonaws.com"

# --- Variables the approval trigger passes to the model-deploy pipeline ---------------------------
PIPELINE_VAR_MODEL_PACKAGE_ARN: Final = "MODEL_PACKAGE_ARN"
PIPELINE_VAR_MODEL_PACKAGE_GROUP: Final = "MODEL_PACKAGE_GROUP_NAME"
PIPELINE_VAR_APPROVAL_STATUS: Final = "MODEL_APPROVAL_STATUS"

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

# --- SageMaker events -----------------------------------------------------------------------------
EVENT_SOURCE: Final = "aws.sagemaker"
EVENT_DETAIL_TYPE: Final = "SageMaker Model Package State Change"
APPROVED: Final = "Approved"
REJECTED: Final = "Rejected"
PENDING: Final = "PendingManualApproval"

# --- Naming ---------------------------------------------------------------------------------------
STAGES: Final = ("staging", "prod")
_GROUP_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
MAX_GROUP_NAME: Final = 63


def model_package_group_name(project_name: str, project_id: str) -> str:
    """`<project-name>-<project-id>`, the group SageMaker Studio shows for the project."""
    name = f"{project_name}-{project_id}"
    if len(name) > MAX_GROUP_NAME or not _GROUP_NAME.match(name):
        raise ValueError(
            f"model package group name {name!r} is invalid: at most {MAX_GROUP_NAME} characters of "
            "letters, digits and single hyphens; choose a shorter project name"
        )
    return name


def endpoint_name(project_name: str, stage: str) -> str:
    """`<project-name>-<stage>`, the endpoint each deploy stage creates."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    return f"{project_name}-{stage}"


def owner_topic(project_id: str) -> str:
    """The GitLab topic that marks a repository as created by this SageMaker project."""
    return f"{OWNER_TOPIC_PREFIX}{project_id}"
