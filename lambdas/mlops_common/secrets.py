"""Read secrets from Secrets Manager once per container and parse them as JSON or a plain string."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops_common import contract, logsafe
from mlops_common.errors import ConfigError, MlopsError

_cache: dict[str, str] = {}
_lock = threading.Lock()


@dataclass(frozen=True, repr=False)
class AccessKeys:
    """Static AWS keys for GitLab CI in access-key mode."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return "AccessKeys(***)"


@dataclass(frozen=True, repr=False)
class StoredTrigger:
    """The deploy repository's pipeline trigger token, as the seed check-in stores it, and a read-only
    project access token (read_api, Reporter) with which the trigger looks up pipelines it started."""

    token: str
    trigger_id: int
    project_id: int
    gitlab_url: str
    read_token: str = ""
    read_token_id: int = 0
    read_token_expires: str = ""  # ISO date

    def __repr__(self) -> str:
        return f"StoredTrigger(trigger_id={self.trigger_id}, project_id={self.project_id}, token=***)"

    def to_secret_string(self) -> str:
        return json.dumps(
            {
                "token": self.token,
                "trigger_id": self.trigger_id,
                "project_id": self.project_id,
                "gitlab_url": self.gitlab_url,
                "read_token": self.read_token,
                "read_token_id": self.read_token_id,
                "read_token_expires": self.read_token_expires,
            }
        )


def parse_stored_trigger(secret_string: str, label: str) -> StoredTrigger | None:
    """The stored trigger, or None while the secret still holds the stack's placeholder."""
    try:
        parsed: object = json.loads(secret_string)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigError(f"secret {label!r} is not the JSON the seed check-in writes: update the project")
    if parsed.get("state") == "pending":
        return None
    token, trigger_id, project_id, url = (
        parsed.get(k) for k in ("token", "trigger_id", "project_id", "gitlab_url")
    )
    read_token, read_id, read_expires = (
        parsed.get(k, d) for k, d in (("read_token", ""), ("read_token_id", 0), ("read_token_expires", ""))
    )
    if (
        not isinstance(token, str)
        or not token
        or not isinstance(trigger_id, int)
        or not isinstance(project_id, int)
        or not isinstance(url, str)
        or not isinstance(read_token, str)
        or not isinstance(read_id, int)
        or not isinstance(read_expires, str)
    ):
        raise ConfigError(
            f"secret {label!r} lacks token, trigger_id, project_id or gitlab_url: update the project so the "
            "seed check-in writes it again"
        )
    logsafe.register_secret(token)
    if read_token:
        logsafe.register_secret(read_token)
    return StoredTrigger(token, trigger_id, project_id, url, read_token, read_id, read_expires)


def bound_gitlab_url(client: Any, secret_id: str) -> str:
    """The GitLab server the platform token belongs to: the token secret's gitlab-mlops:gitlab-url tag.

    Read with DescribeSecret, which never returns the value: a project cannot send the token anywhere
    else, because the check-in compares this with its GitLab URL before the token is read.
    """
    label = secret_label(secret_id)
    try:
        described = client.describe_secret(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        if code == "ResourceNotFoundException":
            raise ConfigError(
                f"secret {label!r} not found: rerun init.sh to store the GitLab token"
            ) from None
        if code == "AccessDeniedException":
            raise ConfigError(
                f"not allowed to describe secret {label!r} (AccessDenied): grant the seed check-in role "
                "secretsmanager:DescribeSecret on it"
            ) from None
        raise MlopsError(f"describing secret {label!r} failed ({code})") from None
    except BotoCoreError as exc:
        raise MlopsError(
            f"Secrets Manager unreachable while describing {label!r}: {type(exc).__name__}"
        ) from None
    tags = {str(t.get("Key")): str(t.get("Value")) for t in described.get("Tags") or []}
    url = tags.get(contract.TOKEN_SERVER_TAG, "").rstrip("/")
    if not url:
        raise ConfigError(
            f"secret {label!r} has no {contract.TOKEN_SERVER_TAG} tag naming its GitLab server: rerun "
            "init.sh "
            "(the platform administrator binds the token to one server)"
        )
    return url


def put_secret_string(client: Any, secret_id: str, value: str) -> None:
    """Store a new version of `secret_id` (and remember the value so logs never show it)."""
    logsafe.register_secret(value)
    label = secret_label(secret_id)
    try:
        client.put_secret_value(SecretId=secret_id, SecretString=value)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise MlopsError(f"storing secret {label!r} failed ({code}): check the seed check-in role") from None
    except BotoCoreError as exc:
        raise MlopsError(
            f"Secrets Manager unreachable while storing {label!r}: {type(exc).__name__}"
        ) from None
    with _lock:
        _cache[secret_id] = value


def secret_label(secret_id: str) -> str:
    """The secret's name for messages: ARNs are shortened to the name part."""
    if secret_id.startswith("arn:") and ":secret:" in secret_id:
        return secret_id.split(":secret:", 1)[1]
    return secret_id


def read_secret_string(client: Any, secret_id: str, purpose: str) -> str:
    """SecretString of `secret_id`, fetched at most once per container. `purpose` names the setting."""
    with _lock:
        cached = _cache.get(secret_id)
    if cached is not None:
        return cached
    label = secret_label(secret_id)
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        if code == "ResourceNotFoundException":
            raise ConfigError(f"secret {label!r} not found: check {purpose}") from None
        if code == "AccessDeniedException":
            raise ConfigError(
                f"not allowed to read secret {label!r} (AccessDenied): grant the Lambda role "
                "secretsmanager:GetSecretValue on it"
            ) from None
        if code == "DecryptionFailure":
            raise ConfigError(
                f"cannot decrypt secret {label!r}: grant the Lambda role kms:Decrypt on its key"
            ) from None
        raise MlopsError(f"reading secret {label!r} failed ({code})") from None
    except BotoCoreError as exc:
        raise MlopsError(
            f"Secrets Manager unreachable while reading {label!r}: {type(exc).__name__}"
        ) from None
    value = response.get("SecretString")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"secret {label!r} has no SecretString: store the value as text ({purpose})")
    logsafe.register_secret(value)
    with _lock:
        _cache[secret_id] = value
    return value


def forget(secret_id: str) -> None:
    """Drop a cached secret (e.g. after GitLab rejected the token, so a rotated one is picked up)."""
    with _lock:
        _cache.pop(secret_id, None)


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def parse_token(secret_string: str, label: str) -> str:
    """The GitLab token from a SecretString that is either JSON {"token": "..."} or the bare token."""
    text = secret_string.strip()
    try:
        parsed: object = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        token = parsed.get("token")
        if not isinstance(token, str) or not token.strip():
            raise ConfigError(
                f'secret {label!r} is JSON without a "token" string: store {{"token": "<value>"}}'
            )
        token = token.strip()
    elif isinstance(parsed, str):
        token = parsed.strip()
    elif isinstance(parsed, (list, bool)):
        raise ConfigError(f'secret {label!r} must be the token or JSON {{"token": "<value>"}}')
    else:
        token = text
    if not token:
        raise ConfigError(f"secret {label!r} holds an empty token: store the GitLab token")
    if any(ch.isspace() for ch in token):
        raise ConfigError(f"secret {label!r} holds a token with whitespace inside: store only the token")
    logsafe.register_secret(token)
    return token


def parse_access_keys(secret_string: str, label: str) -> AccessKeys:
    """AWS keys from JSON {"AccessKeyId": "...", "SecretAccessKey": "..."}."""
    try:
        parsed: object = json.loads(secret_string)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigError(f'secret {label!r} must be JSON {{"AccessKeyId": ..., "SecretAccessKey": ...}}')
    key_id, secret = parsed.get("AccessKeyId"), parsed.get("SecretAccessKey")
    if not isinstance(key_id, str) or not key_id or not isinstance(secret, str) or not secret:
        raise ConfigError(f"secret {label!r} lacks AccessKeyId or SecretAccessKey strings")
    logsafe.register_secret(key_id)
    logsafe.register_secret(secret)
    return AccessKeys(key_id, secret)
