"""The bootstrap's one error type and how AWS errors are told apart and explained."""

from __future__ import annotations


class BootstrapError(Exception):
    """An expected failure with a message that says what to do."""


def error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def describe_aws_error(error: Exception) -> str:
    code = error_code(error)
    if code in (
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
    ):
        return (
            f"{code}: the AWS credentials are invalid or expired; "
            "refresh them (aws sso login / aws configure)"
        )
    if code in ("AccessDenied", "AccessDeniedException", "403"):
        return (
            f"{error} - the caller needs S3, Secrets Manager, CloudFormation, IAM and Service Catalog rights"
        )
    return str(error)
