"""Lambda entry point for EventBridge "SageMaker Model Package State Change" events (Approved, Rejected).

Errors are raised, never returned: Lambda retries the event and the dead-letter queue keeps it, so
no approval is lost silently. Config, clients and the token are built once per container.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from mlops_common import ca_bundle, contract, logsafe, runtime, secrets
from mlops_common.errors import ConfigError, MlopsError
from mlops_common.gitlab_client import GitLabSettings

from pipeline_trigger import core
from pipeline_trigger.config import TriggerConfig

logger = logging.getLogger(__name__)
for _name in ("pipeline_trigger", "mlops_common"):
    logging.getLogger(_name).setLevel(os.environ.get(contract.ENV_LOG_LEVEL, "INFO"))
logsafe.install()

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _setup() -> tuple[TriggerConfig, Any, Any]:
    """Config and AWS clients, once per container."""
    with _lock:
        if "config" not in _state:
            _state["config"] = TriggerConfig.from_env(os.environ)
            _state["secrets"] = runtime.aws_client("secretsmanager")
            _state["s3"] = runtime.aws_client("s3")
        return _state["config"], _state["secrets"], _state["s3"]


def reset() -> None:
    """Forget the per-container state (tests, or after the environment changed)."""
    with _lock:
        _state.clear()


@dataclass(frozen=True)
class AwsRegistry:
    """The rollback's view of AWS: the production deploy stack's output and the registry's packages."""

    cloudformation: Any
    sagemaker: Any
    prod_stack_name: str

    def live_in_production(self) -> str:
        try:
            stacks = self.cloudformation.describe_stacks(StackName=self.prod_stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
                return ""  # nothing deployed to production yet
            raise _aws_error(exc, f"reading stack {self.prod_stack_name}") from None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in (stacks[0].get("Outputs") or []) if stacks}
        return str(outputs.get(contract.DEPLOY_STACK_PACKAGE_OUTPUT, ""))

    def approval_status(self, arn: str) -> str | None:
        try:
            described = self.sagemaker.describe_model_package(ModelPackageName=arn)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationException":
                return None
            raise _aws_error(exc, f"describing {arn}") from None
        return str(described.get("ModelApprovalStatus", ""))


def _aws_error(exc: ClientError, action: str) -> MlopsError:
    code = exc.response.get("Error", {}).get("Code", "Unknown")
    return MlopsError(f"{action} failed ({code}): check the trigger role's permissions")


def _registry(cfg: TriggerConfig) -> AwsRegistry | None:
    if not cfg.prod_stack_name:
        return None
    with _lock:
        if "cloudformation" not in _state:
            _state["cloudformation"] = runtime.aws_client("cloudformation")
            _state["sagemaker"] = runtime.aws_client("sagemaker")
    return AwsRegistry(_state["cloudformation"], _state["sagemaker"], cfg.prod_stack_name)


def _gitlab(cfg: TriggerConfig, secrets_client: Any, s3: Any, context: Any) -> core.Deployer:
    """A GitLab client that sends no private token, one with the read-only token, and the trigger token."""
    label = secrets.secret_label(cfg.trigger_secret_id)
    trigger = secrets.parse_stored_trigger(
        secrets.read_secret_string(secrets_client, cfg.trigger_secret_id, contract.ENV_TRIGGER_TOKEN_SECRET),
        label,
    )
    if trigger is None:
        raise ConfigError(
            f"secret {label} holds no pipeline trigger yet: the project's seed check-in writes it; update "
            "the SageMaker project to run it again"
        )
    verify = ca_bundle.ssl_verify(s3, cfg.ca_bundle_uri, contract.ENV_GITLAB_CA_BUNDLE)
    # retry_posts=False: a POST that may have started a pipeline is never re-sent; Lambda's retry (or the
    # re-drive) comes back through the lookup by name instead.
    settings = GitLabSettings(
        url=cfg.gitlab_url,
        token_source=label,
        ssl_verify=verify,
        deadline=runtime.deadline(context, runtime.RAISE_RESERVE),
        retry_posts=False,
    )
    return core.Deployer(
        runtime.gitlab(settings, None), runtime.gitlab(settings, trigger.read_token or None), trigger
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        cfg, secrets_client, s3 = _setup()
        return core.handle(lambda: _gitlab(cfg, secrets_client, s3, context), cfg, event, _registry(cfg))
    except MlopsError as exc:
        if "config" in _state:
            runtime.forget_rejected_token(exc, _state["config"].trigger_secret_id)
        logger.error("approval trigger failed: %s", exc)
        raise
