"""Names, settings and helpers the steps share."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

# CI/CD variable names (the platform sets them on this project; the approval trigger passes the
# MODEL_* ones as pipeline variables).
VAR_PROJECT_NAME: Final = "SAGEMAKER_PROJECT_NAME"
VAR_PROJECT_ID: Final = "SAGEMAKER_PROJECT_ID"
VAR_REGION: Final = "AWS_DEFAULT_REGION"
VAR_REGION_ALIAS: Final = "AWS_REGION"
VAR_ARTIFACT_BUCKET: Final = "ARTIFACT_BUCKET"
VAR_MODEL_PACKAGE_GROUP: Final = "MODEL_PACKAGE_GROUP_NAME"
VAR_EXECUTION_ROLE: Final = "SAGEMAKER_EXECUTION_ROLE_ARN"
VAR_MODEL_PACKAGE_ARN: Final = "MODEL_PACKAGE_ARN"
VAR_APPROVAL_STATUS: Final = "MODEL_APPROVAL_STATUS"
# "true" lets the production job promote an Approved version older than the newest approval (a deliberate
# rollback with an older MODEL_PACKAGE_ARN); set when starting that pipeline, never project-wide.
VAR_PROMOTE_OLDER: Final = "PROMOTE_OLDER_VERSION"

APPROVED: Final = "Approved"
STAGES: Final = ("staging", "prod")

# Model registry data contract with the model-build repository.
METADATA_TEST_DATA_URI: Final = "TestDataS3Uri"
EVALUATION_METRICS_KEY: Final = "regression_metrics"

# Files the build step writes into the build directory (the CI artifact the later jobs read).
MODEL_PACKAGE_FILE: Final = "model-package.json"
TEMPLATE_FILE: Final = "endpoint-config-template.yml"
# Written by the staging job only when the staging test passed; the production job promotes nothing else.
STAGING_PASSED_FILE: Final = "staging-passed.json"

# Registry write-back: the version a stage serves carries the tag deployed-to:<stage> (its value: the
# pipeline that deployed it). The model-build repository's merge request note reads deployed-to:prod.
DEPLOYED_TAG_PREFIX: Final = "deployed-to:"


class StepError(Exception):
    """An expected failure: the message says what is wrong and how to fix it; no traceback is shown."""


@dataclass(frozen=True)
class Project:
    """The SageMaker project this repository deploys for, read once from the CI environment."""

    name: str
    id: str
    region: str
    model_package_group: str
    artifact_bucket: str
    execution_role_arn: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Project:
        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise StepError(
                    f"CI/CD variable {name} is not set; the SageMaker project sets it on this GitLab "
                    "project (Settings > CI/CD > Variables): restore it there"
                )
            return value

        return cls(
            name=need(VAR_PROJECT_NAME),
            id=need(VAR_PROJECT_ID),
            region=env.get(VAR_REGION, "").strip() or need(VAR_REGION_ALIAS),
            model_package_group=need(VAR_MODEL_PACKAGE_GROUP),
            artifact_bucket=need(VAR_ARTIFACT_BUCKET),
            execution_role_arn=need(VAR_EXECUTION_ROLE),
        )

    def endpoint_name(self, stage: str) -> str:
        """`<project-name>-<project-id>-<stage>`, the endpoint each deploy stage creates."""
        return f"{self.name}-{self.id}-{check_stage(stage)}"

    def stack_name(self, stage: str) -> str:
        """The CloudFormation stack holding one stage's model, endpoint config and endpoint."""
        return f"{self.name}-{self.id}-deploy-{check_stage(stage)}"

    def tags(self) -> dict[str, str]:
        """Tags SageMaker Studio uses to list a project's resources."""
        return {"sagemaker:project-name": self.name, "sagemaker:project-id": self.id}


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise StepError(f"unknown stage {stage!r}; expected one of: {', '.join(STAGES)}")
    return stage


def parameters_file(stage: str) -> str:
    return f"{check_stage(stage)}-parameters.json"


def tags_file(stage: str) -> str:
    return f"{check_stage(stage)}-tags.json"


def deploy_result_file(stage: str) -> str:
    return f"{check_stage(stage)}-deploy.json"


def deploy_dotenv_file(stage: str) -> str:
    """The deploy job's dotenv report: GitLab sets the environment's URL from it."""
    return f"{check_stage(stage)}-deploy.env"


def deployed_tag(stage: str) -> str:
    return f"{DEPLOYED_TAG_PREFIX}{check_stage(stage)}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    if not uri.startswith("s3://") or "/" not in uri[5:] or uri.endswith("/"):
        raise StepError(f"{uri!r} is not an S3 object URI of the form s3://bucket/key")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def read_s3_text(s3: Any, uri: str) -> str:
    bucket, key = split_s3_uri(uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise StepError(
                f"{uri} does not exist; re-run the model-build pipeline that registers it"
            ) from exc
        raise StepError(f"cannot read {uri} ({code}); check that the CI role may read that bucket") from exc
    return str(body.decode("utf-8"))


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise StepError(f"{path} is missing; run the step from the repository root or pass its path") from exc


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StepError(
            f"{path} is missing; it is written by an earlier job (run the build job first)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise StepError(f"{path} is not valid JSON: {exc}") from exc


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def run_cli(body: Callable[[], int]) -> int:
    """Run a step's main body: expected errors print one readable line and exit 1, no traceback."""
    try:
        return body()
    except StepError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
    except NoCredentialsError:
        print(
            "ERROR: no AWS credentials: with AWS_AUTH_MODE=oidc set AWS_ROLE_ARN and an id_token, with "
            "AWS_AUTH_MODE=access-keys set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (masked)",
            file=sys.stderr,
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(
            f"ERROR: AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}",
            file=sys.stderr,
        )
    except BotoCoreError as exc:
        print(f"ERROR: AWS call failed: {exc}", file=sys.stderr)
    return 1


def environ() -> Mapping[str, str]:
    return os.environ
