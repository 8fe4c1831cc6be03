"""The GitLab token secret: created or updated as JSON, bound by a tag to the one server it may be sent to."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlops_common import contract

from scripts.admin.bootstrap.errors import BootstrapError, error_code
from scripts.admin.bootstrap.settings import TOKEN_ENV

TOKEN_SERVER_TAG = contract.TOKEN_SERVER_TAG


def secret_server(sm: Any, name: str) -> str | None:
    """The GitLab server the stored token is bound to (its tag); None when the secret does not exist."""
    from botocore.exceptions import ClientError

    try:
        described = sm.describe_secret(SecretId=name)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise
    tags = {t["Key"]: t["Value"] for t in described.get("Tags") or []}
    return str(tags.get(TOKEN_SERVER_TAG, ""))


def ensure_token_secret(
    sm: Any, name: str, token: str | None, gitlab_url: str, log: Callable[[str], None]
) -> str:
    """Create or update the secret as JSON {"token": ...}, bound to `gitlab_url` by its tag; returns the ARN.

    The seed check-in sends the token only to the server this tag names. A token bound to another
    server is never silently re-bound: pass the token for the new server. Never logs the token.
    """
    from botocore.exceptions import ClientError

    body = json.dumps({"token": token}) if token is not None else None
    tags = [{"Key": TOKEN_SERVER_TAG, "Value": gitlab_url}]
    try:
        described = sm.describe_secret(SecretId=name)
    except ClientError as error:
        if error_code(error) != "ResourceNotFoundException":
            raise
        if body is None:
            raise BootstrapError(
                f"no GitLab token: secret {name} does not exist yet; "
                f"set {TOKEN_ENV} or pipe it with --token-stdin"
            ) from None
        created = sm.create_secret(
            Name=name,
            SecretString=body,
            Description=(
                f"GitLab access token (scope api) of the SageMaker GitLab MLOps bundle, for {gitlab_url}"
            ),
            Tags=tags,
        )
        log(f"secret {name} created, bound to {gitlab_url}")
        return str(created["ARN"])
    arn = str(described["ARN"])
    bound = {t["Key"]: t["Value"] for t in described.get("Tags") or []}.get(TOKEN_SERVER_TAG, "")
    if body is None:
        if bound != gitlab_url:
            raise BootstrapError(
                f"secret {name} holds a token for {bound or 'an unknown server'}, not {gitlab_url}: pass the "
                f"token for {gitlab_url} ({TOKEN_ENV} or --token-stdin)"
            )
        log(f"secret {name} exists; kept (set {TOKEN_ENV} to replace the token)")
        return arn
    current = sm.get_secret_value(SecretId=name).get("SecretString")
    if current == body:
        log(f"secret {name} unchanged")
    else:
        sm.put_secret_value(SecretId=name, SecretString=body)
        log(f"secret {name} updated with the new token")
    if bound != gitlab_url:
        sm.tag_resource(SecretId=name, Tags=tags)
        log(f"secret {name} bound to {gitlab_url}")
    return arn
