"""Lambda entry point of Custom::GitLabSeedRepositories (crhelper): parse, build clients, call core.

Expected failures (`MlopsError`) become FAILED with their one-line message and no stack trace; a bug
still fails the resource (crhelper answers with the exception text). crhelper's timer answers FAILED
just before the Lambda times out, and GitLab calls stop before that deadline, so a stack never hangs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from crhelper import CfnResource
from mlops_common import ca_bundle, contract, logsafe, runtime, secrets
from mlops_common.errors import ConfigError, MlopsError
from mlops_common.gitlab_api import GitLabApi
from mlops_common.gitlab_client import GitLabSettings
from mlops_common.secrets import AccessKeys, StoredTrigger

from seedcode_checkin import core, deploy_stacks
from seedcode_checkin.config import RETAIN, CheckinConfig, RepoTarget
from seedcode_checkin.seed import Seed, read_seed_zip

logger = logging.getLogger(__name__)
logsafe.install()

# crhelper keeps a Delete alive this long so CloudWatch receives the logs before the stack removes them.
SLEEP_ON_DELETE_SECONDS = 5
REASON_LIMIT = 256
FAILED = "FAILED"
# Answered by a Create that failed before it knew where the repositories go: its Delete has nothing to do.
FAILED_CREATE_ID = "gitlab-seed-repositories-not-created"

helper = CfnResource(
    json_logging=False,
    log_level=os.environ.get("LOG_LEVEL", "INFO"),
    boto_level="WARNING",
    sleep_on_delete=SLEEP_ON_DELETE_SECONDS,
)


@dataclass(frozen=True)
class Clients:
    s3: Any
    secrets: Any
    cloudformation: Any


def build_clients() -> Clients:
    return Clients(
        s3=runtime.aws_client("s3"),
        secrets=runtime.aws_client("secretsmanager"),
        cloudformation=runtime.aws_client("cloudformation"),
    )


CLIENTS: Clients | None = None
try:
    CLIENTS = build_clients()
except Exception as exc:  # noqa: BLE001 - any cold-start failure must still answer CloudFormation
    helper.init_failure(exc)


def handler(event: dict[str, Any], context: Any) -> None:
    helper(event, context)


def fit_reason(message: str, limit: int = REASON_LIMIT) -> str:
    """Keep the reason under crhelper's cut, preserving its start and its end (where the fix is)."""
    if len(message) <= limit:
        return message
    head = limit // 3
    return message[:head] + " … " + message[-(limit - head - 3) :]


def _answer(
    event: dict[str, Any], context: Any, action: Callable[[dict[str, Any], Any], str | None]
) -> str | None:
    """Run one lifecycle action; an expected error becomes FAILED with its message as the reason."""
    try:
        return action(event, context)
    except MlopsError as exc:
        token_secret = event.get("ResourceProperties", {}).get("GitLabTokenSecretArn")
        runtime.forget_rejected_token(exc, token_secret if isinstance(token_secret, str) else None)
        logger.error("%s failed: %s", event.get("RequestType"), exc)
        helper.Status = FAILED
        helper.Reason = fit_reason(str(exc))
        if isinstance(exc, core.CreateFailed) and event.get("RequestType") == "Create":
            return exc.physical_id  # an Update keeps the id CloudFormation has
        physical = event.get("PhysicalResourceId")
        return physical if isinstance(physical, str) and physical else FAILED_CREATE_ID


def _clients() -> Clients:
    if CLIENTS is None:  # pragma: no cover - crhelper answers init_failure before we get here
        raise MlopsError("AWS clients could not be created at start-up: see the function's logs")
    return CLIENTS


def same_server(a: str, b: str) -> bool:
    """Whether two GitLab base URLs name the same server (scheme, host and port case-insensitive)."""
    from urllib.parse import urlsplit

    left, right = urlsplit(a.rstrip("/")), urlsplit(b.rstrip("/"))
    return (left.scheme.lower(), (left.netloc or "").lower(), left.path) == (
        right.scheme.lower(),
        (right.netloc or "").lower(),
        right.path,
    )


def _gitlab(target: RepoTarget, context: Any) -> GitLabApi:
    clients = _clients()
    label = secrets.secret_label(target.token_secret_id)
    # The token goes only to the server it was issued for: refuse before reading it.
    bound = secrets.bound_gitlab_url(clients.secrets, target.token_secret_id)
    if not same_server(bound, target.gitlab_url):
        logger.error(
            "refused: the token secret %s is bound (tag %s) to %s", label, contract.TOKEN_SERVER_TAG, bound
        )
        raise ConfigError(
            f"GitLab URL {target.gitlab_url} is not the server the platform token belongs to ({bound}): "
            "create the project from the template the platform administrator published"
        )
    token = secrets.parse_token(
        secrets.read_secret_string(
            clients.secrets, target.token_secret_id, "the GitLabTokenSecretName parameter"
        ),
        label,
    )
    verify = ca_bundle.ssl_verify(clients.s3, target.ca_bundle_uri, "the GitLabCaBundleS3Uri parameter")
    settings = GitLabSettings(
        url=target.gitlab_url,
        token_source=label,
        ssl_verify=verify,
        deadline=runtime.deadline(context, runtime.ANSWER_RESERVE),
    )
    return runtime.gitlab(settings, token)


def _access_keys(cfg: CheckinConfig) -> dict[str, AccessKeys] | None:
    """Each duty's access key (access-keys mode), read fresh: a rotation changes them."""
    if cfg.ci_auth_mode != contract.AUTH_MODE_ACCESS_KEYS:
        return None
    keys = {}
    for duty in cfg.credentials:
        secrets.forget(duty.access_key_secret_id)
        text = secrets.read_secret_string(
            _clients().secrets, duty.access_key_secret_id, f"Ci{duty.duty.capitalize()}AccessKeySecretArn"
        )
        keys[duty.duty] = secrets.parse_access_keys(text, secrets.secret_label(duty.access_key_secret_id))
    return keys


@dataclass(frozen=True)
class SecretTriggerStore:
    """The deploy trigger token in the project's Secrets Manager secret."""

    client: Any
    secret_id: str

    def read(self) -> StoredTrigger | None:
        secrets.forget(self.secret_id)
        text = secrets.read_secret_string(self.client, self.secret_id, "DeployTriggerSecretArn")
        return secrets.parse_stored_trigger(text, secrets.secret_label(self.secret_id))

    def write(self, trigger: StoredTrigger) -> None:
        secrets.put_secret_string(self.client, self.secret_id, trigger.to_secret_string())


def _seed_loader(cfg: CheckinConfig) -> Callable[[str], Seed]:
    s3 = _clients().s3

    def load(key: str) -> Seed:
        uri = f"s3://{cfg.seed_bucket}/{key}"
        try:
            data = s3.get_object(Bucket=cfg.seed_bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            raise ConfigError(
                f"cannot read seed {uri} ({code}): upload the bundle again with init.sh"
            ) from None
        except BotoCoreError as exc:
            raise MlopsError(f"cannot read seed {uri}: {type(exc).__name__}") from None
        return read_seed_zip(data, key.rsplit("/", 1)[-1])

    return load


def _run(event: dict[str, Any], context: Any, action: Callable[..., core.Outcome]) -> str:
    cfg = CheckinConfig.from_properties(event.get("ResourceProperties", {}))
    store = SecretTriggerStore(_clients().secrets, cfg.trigger_secret_id)
    gl = _gitlab(cfg.target, context)
    warning = core.token_expiry_warning(gl, cfg.target.token_warning_days)
    outcome = action(gl, cfg, _seed_loader(cfg), _access_keys(cfg), store)
    if outcome.physical_id != event.get("PhysicalResourceId") and event.get("RequestType") == "Update":
        logger.info("repositories moved: CloudFormation will delete %s next", event.get("PhysicalResourceId"))
    helper.Data.update(outcome.data())
    helper.Data[contract.CHECKIN_DATA_TOKEN_WARNING] = warning or "none"
    if warning:
        helper.Reason = fit_reason(warning)
    return outcome.physical_id


def _create(event: dict[str, Any], context: Any) -> str | None:
    return _run(event, context, core.create)


def _update(event: dict[str, Any], context: Any) -> str | None:
    return _run(event, context, core.update)


def _delete(event: dict[str, Any], context: Any) -> str | None:
    props = event.get("ResourceProperties", {})
    # Endpoints first: a stack that cannot be deleted fails the Delete before any repository is touched.
    remaining = context.get_remaining_time_in_millis() / 1000.0
    helper.Reason = fit_reason(deploy_stacks.on_delete(_clients().cloudformation, event, remaining))
    policy = props.get("DeletionPolicy") or RETAIN
    try:
        target = RepoTarget.from_properties(props)
    except ConfigError as exc:
        # Create validates the same properties first, so with these nothing can have been created.
        logger.warning("nothing to delete, the properties never passed validation: %s", exc)
        return None
    physical = str(event.get("PhysicalResourceId", ""))
    if physical == FAILED_CREATE_ID:
        logger.info("nothing to delete: the Create failed before any repository was created")
        return None
    if policy != RETAIN:
        core.delete(_gitlab(target, context), target, physical)
        return None
    # retain: the repositories stay, but this project's approval trigger is revoked. Best effort: a
    # GitLab that cannot be reached must not hold the project's deletion.
    try:
        core.delete(_gitlab(target, context), target, physical)
    except MlopsError as exc:
        logger.warning("repositories retained; could not revoke the approval trigger: %s", exc)
    return None


@helper.create
def on_create(event: dict[str, Any], context: Any) -> str | None:
    return _answer(event, context, _create)


@helper.update
def on_update(event: dict[str, Any], context: Any) -> str | None:
    return _answer(event, context, _update)


@helper.delete
def on_delete(event: dict[str, Any], context: Any) -> str | None:
    return _answer(event, context, _delete)
