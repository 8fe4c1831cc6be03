"""The account's IAM OIDC provider for the GitLab issuer: create one, or reuse the one that exists."""

from __future__ import annotations

from typing import Any

from scripts.admin.bootstrap.settings import Settings
from scripts.admin.bootstrap.stacks import current_stack_parameters


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
