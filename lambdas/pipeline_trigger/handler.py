"""Lambda entry point for EventBridge "SageMaker Model Package State Change" events.

Errors are raised, never returned: Lambda retries the event and the dead-letter queue keeps it, so
no approval is lost silently. Config, clients and the token are built once per container.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import boto3
from botocore.config import Config
from mlops_common import ca_bundle, contract, logsafe, secrets
from mlops_common.errors import ConfigError, GitLabAuthError, GitLabNotFound, MlopsError
from mlops_common.gitlab_client import GitLab, GitLabSettings
from mlops_common.secrets import StoredTrigger

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
            config = Config(
                connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"}
            )
            _state["config"] = TriggerConfig.from_env(os.environ)
            _state["secrets"] = boto3.client("secretsmanager", config=config)
            _state["s3"] = boto3.client("s3", config=config)
        return _state["config"], _state["secrets"], _state["s3"]


def reset() -> None:
    """Forget the per-container state (tests, or after the environment changed)."""
    with _lock:
        _state.clear()


def _gitlab(cfg: TriggerConfig, secrets_client: Any, s3: Any, context: Any) -> tuple[GitLab, StoredTrigger]:
    """A GitLab client that sends no private token, and the deploy repository's trigger token."""
    label = secrets.secret_label(cfg.trigger_secret_id)
    trigger = secrets.parse_stored_trigger(
        secrets.read_secret_string(secrets_client, cfg.trigger_secret_id, contract.ENV_TRIGGER_TOKEN_SECRET),
        label,
    )
    if trigger is None:
        raise ConfigError(
            f"secret {label} holds no pipeline trigger yet: the project's seed check-in writes it; update "
            "the "
            "SageMaker project to run it again"
        )
    verify = ca_bundle.ssl_verify(s3, cfg.ca_bundle_uri, contract.ENV_GITLAB_CA_BUNDLE)
    deadline = None
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000.0 - 2.0
    settings = GitLabSettings(url=cfg.gitlab_url, token_source=label, ssl_verify=verify, deadline=deadline)
    return GitLab(settings, None), trigger


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        cfg, secrets_client, s3 = _setup()
        return core.handle(lambda: _gitlab(cfg, secrets_client, s3, context), cfg, event)
    except MlopsError as exc:
        if isinstance(exc, GitLabAuthError | GitLabNotFound) and "config" in _state:
            secrets.forget(_state["config"].trigger_secret_id)  # a re-created trigger is read again next time
        logger.error("approval trigger failed: %s", exc)
        raise
