"""Secrets: read once per container, parsed as JSON or plain text, errors name the secret not its value."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from mlops_common import secrets
from mlops_common.errors import ConfigError


class FakeSecrets:
    def __init__(self, value: str | None = None, error: str | None = None) -> None:
        self.value, self.error, self.calls = value, error, 0

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls += 1
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "m"}}, "GetSecretValue")
        return {"SecretString": self.value}


ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-token-AbCdEf"


def test_secret_is_read_once_per_container_until_forgotten() -> None:
    client = FakeSecrets("tok-123456")
    assert secrets.read_secret_string(client, ARN, "p") == "tok-123456"
    assert secrets.read_secret_string(client, ARN, "p") == "tok-123456"
    assert client.calls == 1
    secrets.forget(ARN)
    secrets.read_secret_string(client, ARN, "p")
    assert client.calls == 2


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("ResourceNotFoundException", "secret 'gitlab-token-AbCdEf' not found: check the Param"),
        ("AccessDeniedException", "secretsmanager:GetSecretValue"),
        ("DecryptionFailure", "kms:Decrypt"),
    ],
)
def test_read_errors_name_the_secret_and_the_fix(code: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        secrets.read_secret_string(FakeSecrets(error=code), ARN, "the Param")


@pytest.mark.parametrize(
    ("stored", "token"),
    [
        ("glpat-abcdef123", "glpat-abcdef123"),
        ("  glpat-abcdef123\n", "glpat-abcdef123"),
        ('{"token": "glpat-abcdef123"}', "glpat-abcdef123"),
        ('{"token": "glpat-x", "user": "bot"}', "glpat-x"),
        ('"glpat-quoted1"', "glpat-quoted1"),
        ("12345678", "12345678"),
    ],
)
def test_token_is_json_or_plain(stored: str, token: str) -> None:
    assert secrets.parse_token(stored, "s") == token


@pytest.mark.parametrize(
    ("stored", "fragment"),
    [
        ('{"password": "glpat-abcdef123"}', 'without a "token" string'),
        ('{"token": ""}', 'without a "token" string'),
        ("[1, 2]", "must be the token or JSON"),
        ("glpat abc", "whitespace inside"),
    ],
)
def test_bad_token_secrets_are_explained_without_echoing_them(stored: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as caught:
        secrets.parse_token(stored, "gitlab-token")
    assert "glpat-abcdef123" not in str(caught.value)


def test_access_keys_parse_and_never_show_in_repr() -> None:
    keys = secrets.parse_access_keys(
        '{"AccessKeyId": "AKIAEXAMPLE12345", "SecretAccessKey": "s3cr3t/Key+x"}', "k"
    )
    assert (keys.access_key_id, keys.secret_access_key) == ("AKIAEXAMPLE12345", "s3cr3t/Key+x")
    assert "s3cr3t" not in repr(keys) and "AKIA" not in repr(keys)
    with pytest.raises(ConfigError, match="lacks AccessKeyId or SecretAccessKey"):
        secrets.parse_access_keys('{"AccessKeyId": "A"}', "k")
    with pytest.raises(ConfigError, match="must be JSON"):
        secrets.parse_access_keys("AKIA:secret", "k")


def test_secret_label_shortens_arns() -> None:
    assert secrets.secret_label(ARN) == "gitlab-token-AbCdEf"
    assert secrets.secret_label("gitlab-token") == "gitlab-token"
