"""Read secrets from Secrets Manager once per container and parse them as JSON or a plain string."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops_common import logsafe
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
