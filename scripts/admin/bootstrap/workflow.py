"""The bootstrap run in order: checks, packaging, token secret, bootstrap stack, uploads, publication.

Every AWS step reads first and writes only what differs, so a second run changes nothing. Read-only
checks (arguments, token, templates, packaging) all run before the first write, so a bad input leaves
nothing half-created.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlops_common import contract

from scripts import REPO_ROOT
from scripts.admin.bootstrap.artifacts import (
    object_url,
    put_if_changed,
    sha256_hex,
    template_argument,
    upload_artifacts,
)
from scripts.admin.bootstrap.aws import Clients, principal_arn
from scripts.admin.bootstrap.errors import BootstrapError
from scripts.admin.bootstrap.oidc import oidc_choice, oidc_provider_arn_for
from scripts.admin.bootstrap.settings import STUDIO_ROLE_REQUIRED, TOKEN_ENV, Settings
from scripts.admin.bootstrap.stacks import deploy_stack, stack_parameters
from scripts.admin.bootstrap.token_secret import ensure_token_secret, secret_server

TEMPLATES_PREFIX = contract.PROJECT_TEMPLATES_PREFIX
S3_TEMPLATE_NAME = contract.S3_TEMPLATE_NAME
VISIBILITY_TAG = ("sagemaker:studio-visibility", "true")
DOMAIN_TEMPLATES_TAG = "sagemaker:projectS3TemplatesLocation"
STEPS = 6


def bundle_bucket_name(account_id: str, region: str) -> str:
    """The bucket templates/bootstrap.yml names (the contract's name; no "sagemaker" in it)."""
    return contract.bundle_bucket_name(account_id, region)


def stack_names(stack_prefix: str) -> dict[str, str]:
    return {"bootstrap": f"{stack_prefix}-bootstrap", "catalog": f"{stack_prefix}-service-catalog"}


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
    from scripts.admin.render_template import RenderError, render_project

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


def run(
    settings: Settings, clients: Clients, console: Console, package: Callable[[Path], Any]
) -> dict[str, str]:
    """The whole bootstrap; returns what the next-steps text needs."""
    from scripts.admin.render_template import Platform

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
        "PublishedTemplateKey": contract.PUBLISHED_TEMPLATE_KEY,
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
        key = contract.PUBLISHED_TEMPLATE_KEY
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
