"""The AWS clients of a run and the identity check that comes before any other call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from scripts.admin.bootstrap.errors import BootstrapError, describe_aws_error


def principal_arn(iam: Any, caller_arn: str) -> str:
    """The IAM principal (role or user ARN, as aws:PrincipalArn shows it) behind an STS caller ARN."""
    parts = caller_arn.split(":")
    if len(parts) < 6:
        raise BootstrapError(f"cannot read the caller ARN {caller_arn!r}")
    partition, account, resource = parts[1], parts[4], parts[5]
    if resource.startswith("assumed-role/"):
        role_name = resource.split("/")[1]
        return str(iam.get_role(RoleName=role_name)["Role"]["Arn"])
    if resource == "root" or resource.startswith("user/"):
        return f"arn:{partition}:iam::{account}:{resource}"
    raise BootstrapError(
        f"the caller {caller_arn} is not a role or user: pass --admin-principal-arn with the role that "
        "administers the bundle"
    )


@dataclass(frozen=True)
class Clients:
    """The AWS clients a run uses; tests pass stubbed ones."""

    sts: Any
    s3: Any
    secretsmanager: Any
    cloudformation: Any
    iam: Any


def make_clients(region: str) -> Clients:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=region or None)
    if not session.region_name:
        raise BootstrapError(
            "no AWS region: pass --region or set AWS_REGION (or a region in your AWS profile)"
        )
    config = Config(
        retries={"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "5")), "mode": "standard"}
    )
    known = (
        set(session.get_available_regions("s3"))
        | set(session.get_available_regions("s3", "aws-cn"))
        | set(session.get_available_regions("s3", "aws-us-gov"))
    )
    if session.region_name not in known:
        raise BootstrapError(
            f"unknown AWS region {session.region_name!r}: fix --region/AWS_REGION "
            "(or update boto3 for a new region)"
        )
    # The identity check answers fast: an unreachable endpoint must not hide behind minutes of retries.
    quick = Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
    return Clients(
        session.client("sts", config=quick),
        *(session.client(name, config=config) for name in ("s3", "secretsmanager", "cloudformation", "iam")),
    )


def check_identity(sts: Any) -> str:
    """The caller's account id, before anything else touches AWS. Tells missing or bad credentials from an
    AWS endpoint that cannot be reached (by botocore's exception classes, not by message text)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProxyConnectionError,
        ReadTimeoutError,
        SSLError,
    )

    endpoint = sts.meta.endpoint_url
    try:
        return str(sts.get_caller_identity()["Account"])
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise BootstrapError(
            f"no working AWS credentials: {error}. Configure them (aws configure, aws sso login or "
            "AWS_PROFILE) for the target account and rerun"
        ) from None
    except (
        EndpointConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
        ConnectionClosedError,
        ProxyConnectionError,
        SSLError,
    ) as error:
        raise BootstrapError(
            f"cannot reach AWS STS at {endpoint} ({type(error).__name__}): check the network, proxy and "
            "AWS_ENDPOINT_URL; the credentials could not be checked yet"
        ) from None
    except ClientError as error:
        raise BootstrapError(f"no working AWS credentials: {describe_aws_error(error)}") from None
