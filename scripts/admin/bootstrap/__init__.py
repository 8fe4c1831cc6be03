"""Bootstrap the bundle into an AWS account (init.sh runs `python -m scripts.admin.bootstrap`).

One module per job: `settings` (arguments), `aws` (clients, identity), `artifacts` (bundle bucket
uploads), `token_secret`, `stacks` (change sets and boto3 waiters), `oidc`, `workflow` (the run in order
and the next steps), `__main__` (the command). boto3 honours AWS_ENDPOINT_URL, so a whole run works
against moto. The names below are the package's public surface.
"""

from scripts.admin.bootstrap.artifacts import object_url, put_if_changed, sha256_hex, upload_artifacts
from scripts.admin.bootstrap.aws import Clients, check_identity, make_clients, principal_arn
from scripts.admin.bootstrap.errors import BootstrapError
from scripts.admin.bootstrap.oidc import find_oidc_provider, oidc_choice, oidc_provider_arn_for
from scripts.admin.bootstrap.settings import (
    DEFAULT_PREFIX,
    DEFAULT_SECRET_NAME,
    DEFAULT_STACK_PREFIX,
    MODES,
    SECRET_NAME_PREFIX,
    TOKEN_ENV,
    Settings,
    parse_settings,
    read_token,
)
from scripts.admin.bootstrap.stacks import deploy_stack, stack_outputs, stack_parameters, template_parameters
from scripts.admin.bootstrap.token_secret import TOKEN_SERVER_TAG, ensure_token_secret, secret_server
from scripts.admin.bootstrap.workflow import (
    BOOTSTRAP_TEMPLATE_PATH,
    CATALOG_TEMPLATE_PATH,
    PROJECT_TEMPLATE_PATH,
    S3_TEMPLATE_NAME,
    STEPS,
    TEMPLATES_PREFIX,
    Console,
    bundle_bucket_name,
    catalog_parameters,
    next_steps,
    run,
)

__all__ = [
    "BOOTSTRAP_TEMPLATE_PATH",
    "CATALOG_TEMPLATE_PATH",
    "DEFAULT_PREFIX",
    "DEFAULT_SECRET_NAME",
    "DEFAULT_STACK_PREFIX",
    "MODES",
    "PROJECT_TEMPLATE_PATH",
    "S3_TEMPLATE_NAME",
    "SECRET_NAME_PREFIX",
    "STEPS",
    "TEMPLATES_PREFIX",
    "TOKEN_ENV",
    "TOKEN_SERVER_TAG",
    "BootstrapError",
    "Clients",
    "Console",
    "Settings",
    "bundle_bucket_name",
    "catalog_parameters",
    "check_identity",
    "deploy_stack",
    "ensure_token_secret",
    "find_oidc_provider",
    "make_clients",
    "next_steps",
    "object_url",
    "oidc_choice",
    "oidc_provider_arn_for",
    "parse_settings",
    "principal_arn",
    "put_if_changed",
    "read_token",
    "run",
    "secret_server",
    "sha256_hex",
    "stack_outputs",
    "stack_parameters",
    "template_parameters",
    "upload_artifacts",
]
