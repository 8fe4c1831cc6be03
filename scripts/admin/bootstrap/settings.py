"""init.sh's arguments, parsed and checked once into a frozen Settings before anything touches AWS."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlops_common import contract

from scripts import REPO_ROOT
from scripts.admin.bootstrap.errors import BootstrapError

MODES = ("service-catalog", "s3-template")
DEFAULT_PREFIX = "bundle"
DEFAULT_STACK_PREFIX = "gitlab-mlops"
DEFAULT_SECRET_NAME = contract.TOKEN_SECRET_NAME
SECRET_NAME_PREFIX = contract.PLATFORM_SECRET_PREFIX  # every project principal is fenced from it
TOKEN_ENV = "GITLAB_TOKEN"  # noqa: S105 - the variable name
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
STUDIO_ROLE_REQUIRED = (
    "--studio-role-arn is required in service-catalog mode: the execution role of your Studio "
    "users, which is given access to the portfolio (or use --mode s3-template)"
)
_ARN = re.compile(r"^arn:aws[a-z-]*:")
_PRINCIPAL_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$|^arn:aws[a-z-]*:iam::\d{12}:root$"
)
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")


@dataclass(frozen=True)
class Settings:
    """Everything the run needs, parsed and checked once."""

    region: str
    mode: str
    prefix: str
    gitlab_url: str
    oidc_provider_arn: str
    studio_role_arn: str
    token_secret_name: str
    stack_prefix: str
    build_dir: Path
    token: str | None = field(default=None, repr=False)  # never printed
    use_oidc: bool = True
    ca_bundle_file: Path | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    admin_principal_arns: tuple[str, ...] = ()  # () = the caller
    data_access_principal_arns: tuple[str, ...] = ()  # besides the admins and the Studio role


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="init.sh",
        description=(
            "Bootstrap the SageMaker + GitLab MLOps bundle into an AWS account: package the Lambdas and "
            "seed repositories, ensure the bundle bucket, upload, store the GitLab token in Secrets "
            "Manager and deploy the Service Catalog product (or the S3 project template)."
        ),
        epilog=(
            f"The GitLab token is read from ${TOKEN_ENV} or, with --token-stdin, from standard input; never "
            "from the command line. On later runs it may be omitted: the stored secret is kept. "
            "AWS_ENDPOINT_URL, AWS_PROFILE and the usual AWS variables are honoured."
        ),
    )
    env = os.environ
    parser.add_argument(
        "--region",
        default=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "",
        help="AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION or the profile's)",
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="key prefix of the artifacts (default: bundle)"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=env.get("BOOTSTRAP_MODE", "service-catalog"),
        help="how Studio finds the template (default: service-catalog)",
    )
    parser.add_argument(
        "--gitlab-url",
        default=env.get("GITLAB_URL", ""),
        help="the GitLab server (https) every project uses; the token is bound to it, and CI's IAM OIDC "
        "provider is created for it",
    )
    parser.add_argument(
        "--oidc-provider-arn", default="", help="reuse this IAM OIDC provider instead of creating one"
    )
    parser.add_argument(
        "--no-oidc",
        action="store_true",
        help="no OIDC provider: projects can only use CiAuthMode=access-keys (a GitLab AWS cannot reach)",
    )
    parser.add_argument(
        "--gitlab-ca-bundle",
        type=Path,
        help="PEM CA bundle of a GitLab with a private CA (uploaded to the bundle bucket)",
    )
    parser.add_argument(
        "--lambda-subnet-ids", default="", help="comma-separated subnets for the Lambdas (GitLab in a VPC)"
    )
    parser.add_argument(
        "--lambda-security-group-ids", default="", help="comma-separated security groups for the Lambdas"
    )
    parser.add_argument(
        "--admin-principal-arn",
        action="append",
        default=[],
        help="role or user that may write the bundle bucket (repeatable; default: the caller)",
    )
    parser.add_argument(
        "--data-access-principal-arn",
        action="append",
        default=[],
        help=(
            "role or user that may read project buckets besides the admins and --studio-role-arn (repeatable)"
        ),
    )
    parser.add_argument(
        "--studio-role-arn",
        default=env.get("STUDIO_ROLE_ARN", ""),
        help="IAM role of Studio users, given access to the Service Catalog portfolio",
    )
    parser.add_argument(
        "--token-secret-name",
        default=DEFAULT_SECRET_NAME,
        help=f"Secrets Manager secret for the GitLab token, under {SECRET_NAME_PREFIX} (default: "
        f"{DEFAULT_SECRET_NAME})",
    )
    parser.add_argument(
        "--token-stdin", action="store_true", help="read the GitLab token from standard input"
    )
    parser.add_argument(
        "--stack-prefix",
        default=DEFAULT_STACK_PREFIX,
        help=f"prefix of the CloudFormation stack names (default: {DEFAULT_STACK_PREFIX})",
    )
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "build", help=argparse.SUPPRESS)
    return parser


def parse_settings(argv: Sequence[str], env: Mapping[str, str], stdin: Callable[[], str]) -> Settings:
    """Parse and check arguments; raises BootstrapError with the fix for anything wrong."""
    args = build_parser().parse_args(argv)
    region = args.region.strip()
    if region and not _REGION.match(region):
        raise BootstrapError(f"region {region!r} is not a region name (like eu-west-1): fix --region")
    gitlab_url = args.gitlab_url.strip().rstrip("/")
    if not gitlab_url:
        raise BootstrapError(
            "--gitlab-url is required: the GitLab server every project of this installation uses (the token "
            "is bound to it)"
        )
    if not re.match(
        r"^https://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*$", gitlab_url
    ):
        raise BootstrapError(
            f"--gitlab-url {gitlab_url!r} must be an https:// server URL without query or trailing slash"
        )
    for option, value in (
        ("--oidc-provider-arn", args.oidc_provider_arn),
        ("--studio-role-arn", args.studio_role_arn),
    ):
        if value and not _ARN.match(value):
            raise BootstrapError(f"{option} {value!r} is not an ARN")
    if args.oidc_provider_arn and args.no_oidc:
        raise BootstrapError("pass either --oidc-provider-arn or --no-oidc, not both")
    for option, values in (
        ("--admin-principal-arn", args.admin_principal_arn),
        ("--data-access-principal-arn", args.data_access_principal_arn),
    ):
        for value in values:
            if not _PRINCIPAL_ARN.match(value):
                raise BootstrapError(
                    f"{option} {value!r} is not an IAM role or user ARN "
                    "(arn:aws:iam::<account>:role/<name>); "
                    "session ARNs (arn:aws:sts::...:assumed-role/...) are not principals"
                )
    subnets = tuple(v.strip() for v in args.lambda_subnet_ids.split(",") if v.strip())
    groups = tuple(v.strip() for v in args.lambda_security_group_ids.split(",") if v.strip())
    for option, values, pattern in (
        ("--lambda-subnet-ids", subnets, _SUBNET),
        ("--lambda-security-group-ids", groups, _SECURITY_GROUP),
    ):
        bad = [v for v in values if not pattern.match(v)]
        if bad:
            raise BootstrapError(f"{option}: {', '.join(bad)} are not {option.split('-')[-2]} ids")
    if bool(subnets) != bool(groups):
        raise BootstrapError("--lambda-subnet-ids and --lambda-security-group-ids go together: give both")
    ca_file = args.gitlab_ca_bundle
    if ca_file is not None and (not ca_file.is_file() or b"BEGIN CERTIFICATE" not in ca_file.read_bytes()):
        raise BootstrapError(f"--gitlab-ca-bundle {ca_file} is not a PEM file with a certificate")
    if not args.token_secret_name.startswith(SECRET_NAME_PREFIX):
        raise BootstrapError(
            f"--token-secret-name must start with {SECRET_NAME_PREFIX} (no project principal may touch that "
            "path)"
        )
    if not args.stack_prefix or not re.match(r"^[A-Za-z][A-Za-z0-9-]{0,80}$", args.stack_prefix):
        raise BootstrapError(
            f"--stack-prefix {args.stack_prefix!r}: letters, digits and '-', starting with a letter"
        )
    prefix = args.prefix.strip("/")
    if not prefix or not re.match(r"^[a-z0-9][a-z0-9-]{0,62}$", prefix):
        raise BootstrapError("--prefix must be 1-63 lowercase letters, digits or '-'")
    if args.mode == "service-catalog" and not args.studio_role_arn:
        raise BootstrapError(STUDIO_ROLE_REQUIRED)
    token = read_token(env, stdin if args.token_stdin else None)
    return Settings(
        region=region,
        mode=args.mode,
        prefix=prefix,
        gitlab_url=gitlab_url,
        oidc_provider_arn=args.oidc_provider_arn,
        studio_role_arn=args.studio_role_arn,
        token_secret_name=args.token_secret_name,
        stack_prefix=args.stack_prefix,
        build_dir=args.build_dir,
        token=token,
        use_oidc=not args.no_oidc,
        ca_bundle_file=ca_file,
        subnet_ids=subnets,
        security_group_ids=groups,
        admin_principal_arns=tuple(args.admin_principal_arn),
        data_access_principal_arns=tuple(args.data_access_principal_arn),
    )


def read_token(env: Mapping[str, str], stdin: Callable[[], str] | None) -> str | None:
    """The token from stdin (when asked) or $GITLAB_TOKEN; None when neither gives one."""
    raw = stdin() if stdin is not None else env.get(TOKEN_ENV, "")
    token = raw.strip()
    if stdin is not None and not token:
        raise BootstrapError("--token-stdin given but standard input was empty: pipe the GitLab token in")
    if token and any(c.isspace() for c in token):
        raise BootstrapError("the GitLab token contains whitespace: pass the bare token")
    return token or None
