"""Bootstrap the bundle into an AWS account: package, bucket, uploads, token secret, stacks, next steps.

init.sh checks the prerequisites and calls this. Every AWS step reads first and writes only what differs,
so a second run changes nothing. Read-only checks (arguments, token, templates, packaging) all run before
the first write, so a bad input leaves nothing half-created. boto3 honours AWS_ENDPOINT_URL, so the whole
run works against moto.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `scripts.package` importable
    sys.path.insert(0, str(REPO_ROOT))

MODES = ("service-catalog", "s3-template")
DEFAULT_PREFIX = "bundle"
DEFAULT_STACK_PREFIX = "gitlab-mlops"
DEFAULT_SECRET_NAME = "gitlab-mlops-platform/gitlab-token"  # noqa: S105 - a name, not a secret
SECRET_NAME_PREFIX = "gitlab-mlops-platform/"  # noqa: S105 - the path every project principal is fenced from
TOKEN_SERVER_TAG = "gitlab-mlops:gitlab-url"  # noqa: S105 - a tag key (lambdas' contract.TOKEN_SERVER_TAG)
TOKEN_ENV = "GITLAB_TOKEN"  # noqa: S105 - the variable name
TEMPLATES_PREFIX = "project-templates"
S3_TEMPLATE_NAME = "gitlab-mlops.yml"
VISIBILITY_TAG = ("sagemaker:studio-visibility", "true")
DOMAIN_TEMPLATES_TAG = "sagemaker:projectS3TemplatesLocation"
SHA_METADATA = "sha256"
MAX_TEMPLATE_BODY = 51_200
STEPS = 6
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
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


class BootstrapError(Exception):
    """An expected failure with a message that says what to do."""


# --- configuration --------------------------------------------------------------------------------------


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


def bundle_bucket_name(account_id: str, region: str) -> str:
    """The bootstrap stack names the bundle bucket so (templates/bootstrap.yml); no "sagemaker" in it."""
    return f"gitlab-mlops-bundle-{account_id}-{region}"


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


def stack_names(stack_prefix: str) -> dict[str, str]:
    return {"bootstrap": f"{stack_prefix}-bootstrap", "catalog": f"{stack_prefix}-service-catalog"}


def object_url(bucket: str, region: str, key: str) -> str:
    """The https URL CloudFormation and Service Catalog read a template from."""
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- progress ---------------------------------------------------------------------------------------------


class Console:
    """Numbered step lines on stdout; details indented under them."""

    def __init__(self, total: int, out: Callable[[str], None] | None = None) -> None:
        self.total = total
        self.count = 0
        self.out = out or (lambda line: print(line, flush=True))

    def step(self, title: str) -> None:
        self.count += 1
        self.out(f"[{self.count}/{self.total}] {title}")

    def detail(self, text: str) -> None:
        self.out(f"      {text}")


# --- S3 ---------------------------------------------------------------------------------------------------


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def put_if_changed(
    s3: Any,
    bucket: str,
    key: str,
    data: bytes,
    tags: Mapping[str, str] | None = None,
    content_type: str = "application/octet-stream",
) -> bool:
    """Upload unless the object already holds these bytes (sha256 in its metadata); True if uploaded."""
    from botocore.exceptions import ClientError

    digest = sha256_hex(data)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        same = head.get("Metadata", {}).get(SHA_METADATA) == digest
    except ClientError as error:
        if _error_code(error) not in ("404", "NoSuchKey", "NotFound"):
            raise
        same = False
    tag_set = [{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())]
    if same:
        if tag_set:
            existing = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            if sorted(existing, key=lambda t: t["Key"]) != tag_set:
                s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tag_set})
        return False
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "Body": data,
        "Metadata": {SHA_METADATA: digest},
        "ContentType": content_type,
        "ServerSideEncryption": "AES256",
    }
    if tag_set:
        params["Tagging"] = "&".join(f"{t['Key']}={t['Value']}" for t in tag_set)
    s3.put_object(**params)
    return True


def upload_artifacts(
    s3: Any,
    bucket: str,
    prefix: str,
    build_dir: Path,
    manifest: Mapping[str, Mapping[str, Mapping[str, str]]],
    log: Callable[[str], None],
) -> None:
    """Upload every manifest artifact to s3://bucket/prefix/<file>; unchanged ones are skipped."""
    for group in ("lambdas", "seeds"):
        for name, entry in sorted(manifest[group].items()):
            key = f"{prefix}/{entry['file']}"
            data = (build_dir / entry["file"]).read_bytes()
            if sha256_hex(data) != entry["sha256"]:
                raise BootstrapError(f"{entry['file']} does not match build/manifest.json: re-run packaging")
            uploaded = put_if_changed(s3, bucket, key, data, content_type="application/zip")
            log(f"{'uploaded ' if uploaded else 'unchanged'} s3://{bucket}/{key}  ({name})")


# --- Secrets Manager ---------------------------------------------------------------------------------------


def secret_server(sm: Any, name: str) -> str | None:
    """The GitLab server the stored token is bound to (its tag); None when the secret does not exist."""
    from botocore.exceptions import ClientError

    try:
        described = sm.describe_secret(SecretId=name)
    except ClientError as error:
        if _error_code(error) == "ResourceNotFoundException":
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
        if _error_code(error) != "ResourceNotFoundException":
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


# --- CloudFormation -----------------------------------------------------------------------------------------


def template_parameters(body: str) -> dict[str, dict[str, Any]]:
    """The Parameters section of a CloudFormation YAML/JSON template (short-form tags tolerated)."""
    from scripts.cfn_yaml import TemplateFormatError, load_template

    try:
        document = load_template(body)
    except TemplateFormatError as exc:
        raise BootstrapError(f"a bundle template cannot be read ({exc}): check out the bundle again") from exc
    params = document.get("Parameters") or {}
    return {str(k): dict(v or {}) for k, v in params.items()}


def stack_parameters(
    template_body: str, offered: Mapping[str, str], template_name: str
) -> list[dict[str, str]]:
    """The offered values the template declares; fails when a parameter without default has no value."""
    declared = template_parameters(template_body)
    missing = sorted(n for n, spec in declared.items() if "Default" not in spec and not offered.get(n))
    if missing:
        raise BootstrapError(
            f"{template_name} needs parameter(s) {', '.join(missing)} that bootstrap cannot fill"
        )
    return [{"ParameterKey": k, "ParameterValue": offered[k]} for k in sorted(declared) if k in offered]


def stack_outputs(cfn: Any, name: str) -> dict[str, str]:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _stack_status(cfn: Any, name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return str(cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"])
    except ClientError as error:
        if "does not exist" in str(error):  # CloudFormation answers ValidationError for unknown stacks
            return None
        raise


def deploy_stack(
    cfn: Any,
    name: str,
    template: Mapping[str, str],
    parameters: Sequence[Mapping[str, str]],
    log: Callable[[str], None],
    tags: Mapping[str, str] | None = None,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 1800.0,
) -> dict[str, str]:
    """Create or update a stack through a change set (like `aws cloudformation deploy`); returns outputs.

    `template` is {"TemplateBody": ...} or {"TemplateURL": ...}. A change set without changes is success.
    A stack whose first create failed (ROLLBACK_COMPLETE or an empty REVIEW_IN_PROGRESS) is deleted first,
    since CloudFormation cannot update it.
    """
    status = _stack_status(cfn, name)
    if status in ("ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"):
        log(f"stack {name} is {status} from an earlier failed create: deleting it first")
        cfn.delete_stack(StackName=name)
        _wait_gone(cfn, name, poll_seconds, timeout_seconds)
        status = None
    elif status and status.endswith("_IN_PROGRESS"):
        raise BootstrapError(f"stack {name} is {status}: wait until it finishes, then run again")
    change_type = "CREATE" if status is None else "UPDATE"
    change_set = f"bootstrap-{int(time.time())}"
    cfn.create_change_set(
        StackName=name,
        ChangeSetName=change_set,
        ChangeSetType=change_type,
        Parameters=list(parameters),
        Capabilities=CAPABILITIES,
        Tags=[{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())],
        **template,
    )
    described = _wait_change_set(cfn, name, change_set, poll_seconds, timeout_seconds)
    if described["Status"] == "FAILED":
        reason = str(described.get("StatusReason", ""))
        cfn.delete_change_set(StackName=name, ChangeSetName=change_set)
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            log(f"stack {name} unchanged")
            return stack_outputs(cfn, name)
        if change_type == "CREATE":
            cfn.delete_stack(StackName=name)
        raise BootstrapError(f"stack {name}: change set failed: {reason}")
    cfn.execute_change_set(StackName=name, ChangeSetName=change_set)
    final = _wait_stack(cfn, name, poll_seconds, timeout_seconds)
    if final not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise BootstrapError(
            f"stack {name} ended {final}: {_first_failure(cfn, name)}; "
            "see its events in the CloudFormation console"
        )
    log(f"stack {name} {'created' if change_type == 'CREATE' else 'updated'}")
    return stack_outputs(cfn, name)


def _wait_change_set(cfn: Any, name: str, change_set: str, poll: float, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = cfn.describe_change_set(StackName=name, ChangeSetName=change_set)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            return described
        if time.monotonic() > deadline:
            raise BootstrapError(f"change set {change_set} of stack {name} did not finish in {timeout:.0f} s")
        time.sleep(poll)


def _wait_stack(cfn: Any, name: str, poll: float, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = _stack_status(cfn, name) or "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS"):
            return status
        if time.monotonic() > deadline:
            raise BootstrapError(f"stack {name} still {status} after {timeout:.0f} s: check the console")
        time.sleep(poll)


def _wait_gone(cfn: Any, name: str, poll: float, timeout: float) -> None:
    status = _wait_stack(cfn, name, poll, timeout)
    if status != "DELETE_COMPLETE":
        raise BootstrapError(
            f"stack {name} could not be deleted ({status}): delete it in the console, then rerun"
        )


def _first_failure(cfn: Any, name: str) -> str:
    events = cfn.describe_stack_events(StackName=name).get("StackEvents", [])
    for event in reversed(events):
        if str(event.get("ResourceStatus", "")).endswith("_FAILED"):
            return f"{event.get('LogicalResourceId')}: {event.get('ResourceStatusReason', '')}"
    return "no failed resource reported"


# --- IAM OIDC provider -----------------------------------------------------------------------------------


def find_oidc_provider(iam: Any, gitlab_url: str) -> str | None:
    """The ARN of an existing IAM OIDC provider for this GitLab issuer, if the account has one."""
    host = gitlab_url.removeprefix("https://").rstrip("/")
    for provider in iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", []):
        arn = str(provider["Arn"])
        if arn.split(":oidc-provider/", 1)[-1].rstrip("/") == host:
            return arn
    return None


def oidc_provider_arn_for(partition: str, account_id: str, gitlab_url: str) -> str:
    """The ARN IAM gives the OIDC provider of an issuer: it is determined by the issuer host."""
    return f"arn:{partition}:iam::{account_id}:oidc-provider/{gitlab_url.removeprefix('https://')}"


# --- templates ----------------------------------------------------------------------------------------------

TEMPLATES_DIR = REPO_ROOT / "templates"
BOOTSTRAP_TEMPLATE = "bootstrap.yml"
CATALOG_TEMPLATE = "service-catalog.yml"
OIDC_OUTPUT = "GitLabOidcProviderArn"
BUCKET_OUTPUT = "BundleBucketName"
PROJECT_TEMPLATE_PATH = TEMPLATES_DIR / "project.yml"
BOOTSTRAP_TEMPLATE_PATH = TEMPLATES_DIR / BOOTSTRAP_TEMPLATE
CATALOG_TEMPLATE_PATH = TEMPLATES_DIR / CATALOG_TEMPLATE


def render_project_template(build_dir: Path, bucket: str, prefix: str, platform: Any) -> bytes:
    """templates/project.yml with the bundle objects and the administrator's settings pinned."""
    from scripts.render_template import RenderError, render_project

    try:
        manifest = json.loads((build_dir / "manifest.json").read_text(encoding="utf-8"))
        rendered = render_project(
            PROJECT_TEMPLATE_PATH.read_text(encoding="utf-8"), manifest, bucket, prefix, platform
        )
    except (OSError, ValueError, RenderError) as error:
        raise BootstrapError(f"rendering templates/project.yml failed: {error}") from None
    out = build_dir / "project.yml"
    out.write_text(rendered, encoding="utf-8")
    return rendered.encode("utf-8")


def template_argument(s3: Any, bucket: str, region: str, key: str, body: bytes) -> dict[str, str]:
    """Inline small templates; upload big ones and pass their URL (CloudFormation's 51,200-byte limit)."""
    if len(body) <= MAX_TEMPLATE_BODY:
        return {"TemplateBody": body.decode("utf-8")}
    put_if_changed(s3, bucket, key, body, content_type="application/x-yaml")
    return {"TemplateURL": object_url(bucket, region, key)}


# --- the run -----------------------------------------------------------------------------------------


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
        raise BootstrapError(f"no working AWS credentials: {_describe_aws_error(error)}") from None


def run(
    settings: Settings, clients: Clients, console: Console, package: Callable[[Path], Any]
) -> dict[str, str]:
    """The whole bootstrap; returns what the next-steps text needs."""
    from scripts.render_template import Platform

    region = clients.s3.meta.region_name
    names = stack_names(settings.stack_prefix)
    console.step("Checking account, inputs and templates")
    identity = clients.sts.get_caller_identity()
    account_id = str(identity["Account"])
    partition = str(identity["Arn"]).split(":")[1]
    console.detail(f"account {account_id}, region {region}, mode {settings.mode}")
    needed = [PROJECT_TEMPLATE_PATH, BOOTSTRAP_TEMPLATE_PATH]
    if settings.mode == "service-catalog":
        needed.append(CATALOG_TEMPLATE_PATH)
    for path in needed:
        if not path.is_file():
            raise BootstrapError(f"{path} is missing: run init.sh from a complete checkout")
    if settings.mode == "service-catalog":
        if not settings.studio_role_arn:
            raise BootstrapError(STUDIO_ROLE_REQUIRED)
        placeholders = {"LaunchRoleArn": f"arn:aws:iam::{account_id}:role/placeholder"}
        stack_parameters(
            CATALOG_TEMPLATE_PATH.read_text(encoding="utf-8"),
            catalog_parameters(settings, "bucket", region, "bundle/project-0.yml", "0", placeholders),
            CATALOG_TEMPLATE,
        )
    bound = secret_server(clients.secretsmanager, settings.token_secret_name)
    if settings.token is None and bound is None:
        raise BootstrapError(
            f"no GitLab token: secret {settings.token_secret_name} does not exist yet; set {TOKEN_ENV} "
            "or pipe the token with --token-stdin"
        )
    if settings.token is None and bound != settings.gitlab_url:
        raise BootstrapError(
            f"secret {settings.token_secret_name} holds a token for {bound or 'an unknown server'}, not "
            f"{settings.gitlab_url}: pass the token for {settings.gitlab_url} ({TOKEN_ENV} or --token-stdin)"
        )
    admins = settings.admin_principal_arns or (principal_arn(clients.iam, str(identity["Arn"])),)
    console.detail(f"bundle administrators (the only writers of the bundle bucket): {', '.join(admins)}")
    readers = tuple(
        dict.fromkeys(
            admins
            + ((settings.studio_role_arn,) if settings.studio_role_arn else ())
            + settings.data_access_principal_arns
        )
    )
    create_oidc, existing_oidc = oidc_choice(
        settings, clients.cloudformation, clients.iam, names["bootstrap"]
    )
    console.detail(
        {
            "create": f"OIDC provider for {settings.gitlab_url}: managed by the bootstrap stack",
            "existing": f"OIDC provider: reusing {existing_oidc}",
            "none": "--no-oidc: projects can only use CiAuthMode=access-keys",
        }[create_oidc]
    )
    bucket = bundle_bucket_name(account_id, region)
    ca_key = ""
    if settings.ca_bundle_file is not None:
        ca_bytes = settings.ca_bundle_file.read_bytes()
        ca_key = f"{settings.prefix}/gitlab-ca-{sha256_hex(ca_bytes)[:12]}.pem"

    def platform(secret_arn: str, oidc_arn: str) -> Platform:
        return Platform(
            gitlab_url=settings.gitlab_url,
            token_secret_arn=secret_arn,
            data_access_principal_arns=readers,
            oidc_provider_arn=oidc_arn,
            ca_bundle_s3_uri=f"s3://{bucket}/{ca_key}" if ca_key else "",
            subnet_ids=settings.subnet_ids,
            security_group_ids=settings.security_group_ids,
        )

    console.step("Packaging Lambdas and seed repositories")
    manifest = package(settings.build_dir)
    # A dry render now, so a template problem stops the run before anything is created.
    placeholder_secret = (
        f"arn:{partition}:secretsmanager:{region}:{account_id}:secret:{settings.token_secret_name}-AbCdEf"
    )
    render_project_template(
        settings.build_dir,
        bucket,
        settings.prefix,
        platform(placeholder_secret, oidc_provider_arn_for(partition, account_id, settings.gitlab_url)),
    )

    console.step(f"GitLab token secret {settings.token_secret_name}")
    secret_arn = ensure_token_secret(
        clients.secretsmanager,
        settings.token_secret_name,
        settings.token,
        settings.gitlab_url,
        console.detail,
    )

    console.step("Deploying the bootstrap stack (bucket, OIDC provider, permissions boundary, launch roles)")
    bootstrap_body = BOOTSTRAP_TEMPLATE_PATH.read_text(encoding="utf-8")
    offered = {
        "GitLabServerUrl": settings.gitlab_url,
        "GitLabTokenSecretArn": secret_arn,
        "CreateOidcProvider": create_oidc,
        "ExistingOidcProviderArn": existing_oidc,
        "AdminPrincipalArns": ",".join(admins),
        "BundlePrefix": settings.prefix,
        "EnableS3ProjectTemplates": "true" if settings.mode == "s3-template" else "false",
        "PublishedTemplateKey": f"{TEMPLATES_PREFIX}/{S3_TEMPLATE_NAME}",
    }
    outputs = deploy_stack(
        clients.cloudformation,
        names["bootstrap"],
        {"TemplateBody": bootstrap_body},
        stack_parameters(bootstrap_body, {k: v for k, v in offered.items() if v}, BOOTSTRAP_TEMPLATE),
        console.detail,
    )
    oidc_arn = outputs.get(OIDC_OUTPUT) or existing_oidc
    bucket = outputs.get(BUCKET_OUTPUT) or bucket

    console.step(f"Uploading artifacts to s3://{bucket}/{settings.prefix}/")
    upload_artifacts(clients.s3, bucket, settings.prefix, settings.build_dir, manifest, console.detail)
    if settings.ca_bundle_file is not None:
        uploaded = put_if_changed(
            clients.s3,
            bucket,
            ca_key,
            settings.ca_bundle_file.read_bytes(),
            content_type="application/x-pem-file",
        )
        console.detail(
            f"{'uploaded ' if uploaded else 'unchanged'} s3://{bucket}/{ca_key}  (GitLab CA bundle)"
        )
    rendered = render_project_template(
        settings.build_dir, bucket, settings.prefix, platform(secret_arn, oidc_arn)
    )
    console.detail(f"rendered {settings.build_dir / 'project.yml'} (the platform settings are pinned in it)")

    result = {
        "account": account_id,
        "region": region,
        "bucket": bucket,
        "secret_arn": secret_arn,
        "secret_name": settings.token_secret_name,
        "oidc_arn": oidc_arn,
        **{f"output:{k}": v for k, v in outputs.items()},
    }
    if settings.mode == "s3-template":
        console.step("Publishing the S3 project template")
        key = f"{TEMPLATES_PREFIX}/{S3_TEMPLATE_NAME}"
        uploaded = put_if_changed(
            clients.s3, bucket, key, rendered, tags=dict([VISIBILITY_TAG]), content_type="application/x-yaml"
        )
        console.detail(f"{'uploaded ' if uploaded else 'unchanged'} s3://{bucket}/{key}")
        result["template_key"] = key
        result["templates_location"] = f"s3://{bucket}/{TEMPLATES_PREFIX}/"
    else:
        console.step("Deploying the Service Catalog portfolio and product")
        key = f"{settings.prefix}/project-{sha256_hex(rendered)[:12]}.yml"
        uploaded = put_if_changed(clients.s3, bucket, key, rendered, content_type="application/x-yaml")
        console.detail(f"{'uploaded ' if uploaded else 'unchanged'} s3://{bucket}/{key}")
        body = CATALOG_TEMPLATE_PATH.read_text(encoding="utf-8")
        offered = catalog_parameters(settings, bucket, region, key, sha256_hex(rendered)[:12], outputs)
        catalog_outputs = deploy_stack(
            clients.cloudformation,
            names["catalog"],
            template_argument(
                clients.s3, bucket, region, f"{settings.prefix}/service-catalog.yml", body.encode()
            ),
            stack_parameters(body, offered, CATALOG_TEMPLATE),
            console.detail,
        )
        result["template_key"] = key
        result.update({f"output:{k}": v for k, v in catalog_outputs.items()})
    return result


def catalog_parameters(
    settings: Settings,
    bucket: str,
    region: str,
    key: str,
    version: str,
    bootstrap_outputs: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What bootstrap can give templates/service-catalog.yml; only the parameters it declares are passed."""
    outputs = bootstrap_outputs or {}
    offered = {
        "ProductTemplateUrl": object_url(bucket, region, key),
        "ProductVersion": version,
        "BundleBucket": bucket,
        "StudioRoleArn": settings.studio_role_arn,
        "LaunchRoleArn": outputs.get("LaunchRoleArn", ""),
    }
    return {k: v for k, v in offered.items() if v}


def oidc_choice(settings: Settings, cfn: Any, iam: Any, stack: str) -> tuple[str, str]:
    """(CreateOidcProvider, ExistingOidcProviderArn) for the bootstrap stack.

    An account has one IAM OIDC provider per issuer: keep the one this stack made, reuse one that
    something else made, create one otherwise.
    """
    if settings.oidc_provider_arn:
        return "existing", settings.oidc_provider_arn
    if not settings.use_oidc:
        return "none", ""
    previous = current_stack_parameters(cfn, stack)
    if (
        previous.get("CreateOidcProvider") == "create"
        and previous.get("GitLabServerUrl") == settings.gitlab_url
    ):
        return "create", ""
    existing = find_oidc_provider(iam, settings.gitlab_url)
    return ("existing", existing) if existing else ("create", "")


def current_stack_parameters(cfn: Any, name: str) -> dict[str, str]:
    """The parameter values a deployed stack runs with; {} when there is no stack."""
    if _stack_status(cfn, name) is None:
        return {}
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}


def next_steps(settings: Settings, result: Mapping[str, str]) -> str:
    lines = ["", "Done. Next steps:"]
    if settings.mode == "s3-template":
        lines += [
            "  1. Point your SageMaker Studio domain at the template location:",
            f"       aws sagemaker add-tags --region {result['region']} \\",
            "         --resource-arn <studio-domain-arn> \\",
            f"         --tags Key={DOMAIN_TEMPLATES_TAG},Value={result['templates_location']}",
        ]
        policy = result.get("output:StudioS3TemplatesPolicyArn")
        if policy:
            lines.append(f"     and attach {policy} to the Studio execution role(s) that create projects.")
        role = result.get("output:S3TemplateRoleArn")
        if role:
            lines.append(
                f"     Projects are created with RoleARN {role} (the only role that policy lets them pass)."
            )
    else:
        who = (
            settings.studio_role_arn
            or "<the execution role of your Studio users: rerun with --studio-role-arn>"
        )
        lines += [
            f"  1. Studio users with role {who} see the product under Projects > Organization templates."
        ]
    lines += [
        "  2. Create a project in Studio; choose GitLabGroup and the repository names. The GitLab server, "
        "the",
        f"     token secret ({result['secret_name']}) and the network are pinned to this installation.",
        "  3. Approve a model package in the registry to deploy it through the model-deploy repository's CI.",
    ]
    if not result.get("oidc_arn"):
        lines.append("  Note: no OIDC provider was set up (--no-oidc): projects use CiAuthMode=access-keys.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = parse_settings(args, os.environ, sys.stdin.read)
        clients = make_clients(settings.region)
        check_identity(clients.sts)
        from scripts import package as packaging

        def package(build_dir: Path) -> Any:
            try:
                return packaging.build_all(build_dir, log=packaging.Progress())
            except packaging.PackagingError as error:
                raise BootstrapError(f"packaging failed: {error}") from None

        result = run(settings, clients, Console(STEPS), package)
    except BootstrapError as error:
        print(f"init.sh: error: {error}", file=sys.stderr)
        return 1
    except _aws_errors() as error:
        print(f"init.sh: error: AWS call failed: {_describe_aws_error(error)}", file=sys.stderr)
        return 1
    print(next_steps(settings, result))
    return 0


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def _describe_aws_error(error: Exception) -> str:
    code = _error_code(error)
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


if __name__ == "__main__":
    sys.exit(main())
