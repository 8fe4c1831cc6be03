"""bootstrap.run in Service Catalog mode: S3, STS, Secrets Manager and IAM on moto; CloudFormation stubbed.

moto answers HTTP 500 for Service Catalog, so the portfolio stack cannot be deployed there; instead a
botocore Stubber checks the exact change set bootstrap asks CloudFormation for.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from scripts.admin import bootstrap
from scripts.admin import package as packaging

REGION = "us-east-1"
STUDIO_ROLE = "arn:aws:iam::123456789012:role/StudioUser"
OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"
CATALOG_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  ProductTemplateUrl: {Type: String}
  ProductVersion: {Type: String}
  StudioRoleArn: {Type: String, Default: ""}
  LaunchRoleArn: {Type: String, Default: ""}
Resources:
  Portfolio:
    Type: AWS::ServiceCatalog::Portfolio
    Properties: {DisplayName: !Sub "${AWS::StackName}", ProviderName: platform}
Outputs:
  PortfolioId: {Value: !Ref Portfolio}
"""


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sc-build")


def settings(build_dir: Path, **overrides: Any) -> bootstrap.Settings:
    values: dict[str, Any] = {
        "region": REGION,
        "mode": "service-catalog",
        "prefix": "bundle",
        "gitlab_url": "https://gitlab.example.com",
        "oidc_provider_arn": OIDC_ARN,
        "studio_role_arn": STUDIO_ROLE,
        "token_secret_name": bootstrap.DEFAULT_SECRET_NAME,
        "stack_prefix": bootstrap.DEFAULT_STACK_PREFIX,
        "build_dir": build_dir,
        "token": "glpat-sc-token",
    }
    values.update(overrides)
    return bootstrap.Settings(**values)


def test_service_catalog_mode_uploads_the_rendered_template_and_deploys_the_portfolio_stack(
    aws_client: Any, build_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "service-catalog.yml"
    catalog.write_text(CATALOG_TEMPLATE)
    monkeypatch.setattr(bootstrap.workflow, "CATALOG_TEMPLATE_PATH", catalog)
    cfn = boto3.client("cloudformation", region_name=REGION)
    s3 = aws_client("s3")
    clients = bootstrap.Clients(aws_client("sts"), s3, aws_client("secretsmanager"), cfn, aws_client("iam"))
    bucket = "gitlab-mlops-bundle-123456789012-us-east-1"  # the bootstrap stack names it so
    s3.create_bucket(Bucket=bucket)
    launch_role = "arn:aws:iam::123456789012:role/gitlab-mlops-platform/gitlab-mlops-service-catalog-launch"
    boot, stack = "gitlab-mlops-bootstrap", "gitlab-mlops-service-catalog"
    boot_outputs = {
        "BundleBucketName": bucket,
        "LaunchRoleArn": launch_role,
        "GitLabOidcProviderArn": OIDC_ARN,
    }

    def missing(name: str) -> dict[str, str]:
        return {
            "service_error_code": "ValidationError",
            "service_message": f"Stack with id {name} does not exist",
        }

    def complete(name: str, outputs: dict[str, str]) -> dict[str, Any]:
        stack_outputs = [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]
        return {
            "Stacks": [
                {
                    "StackName": name,
                    "StackStatus": "CREATE_COMPLETE",
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "Outputs": stack_outputs,
                }
            ]
        }

    def expect_create(stub: Stubber, name: str, body: str, params: Any, outputs: dict[str, str]) -> None:
        stub.add_client_error("describe_stacks", **missing(name))
        expected = {
            "StackName": name,
            "ChangeSetName": ANY,
            "ChangeSetType": "CREATE",
            "TemplateBody": body,
            "Parameters": params,
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            "Tags": [],
        }
        stub.add_response("create_change_set", {"Id": "cs"}, expected)
        stub.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"})
        stub.add_response("execute_change_set", {})
        stub.add_response("describe_stacks", complete(name, outputs))
        stub.add_response("describe_stacks", complete(name, outputs))

    lines: list[str] = []
    sent: list[dict[str, Any]] = []
    cfn.meta.events.register(
        "provide-client-params.cloudformation.CreateChangeSet", lambda params, **_: sent.append(dict(params))
    )
    with Stubber(cfn) as stub:
        expect_create(stub, boot, bootstrap.BOOTSTRAP_TEMPLATE_PATH.read_text(), ANY, boot_outputs)
        expect_create(stub, stack, CATALOG_TEMPLATE, ANY, {"PortfolioId": "port-123"})
        result = bootstrap.run(
            settings(build_dir),
            clients,
            bootstrap.Console(bootstrap.STEPS, lines.append),
            packaging.build_all,
        )
        stub.assert_no_pending_responses()

    assert result["output:PortfolioId"] == "port-123"
    secret_arn = aws_client("secretsmanager").describe_secret(SecretId=bootstrap.DEFAULT_SECRET_NAME)["ARN"]
    # The caller (moto's user) administers the bundle; the token secret is the one just created.
    assert {p["ParameterKey"]: p["ParameterValue"] for p in sent[0]["Parameters"]} == {
        "AdminPrincipalArns": "arn:aws:iam::123456789012:user/moto",
        "BundlePrefix": "bundle",
        "CreateOidcProvider": "existing",
        "EnableS3ProjectTemplates": "false",
        "ExistingOidcProviderArn": OIDC_ARN,
        "GitLabServerUrl": "https://gitlab.example.com",
        "GitLabTokenSecretArn": secret_arn,
        "PublishedTemplateKey": "project-templates/gitlab-mlops.yml",
    }
    assert result["bucket"] == bucket
    rendered = (build_dir / "project.yml").read_bytes()
    key = f"bundle/project-{hashlib.sha256(rendered).hexdigest()[:12]}.yml"
    assert result["template_key"] == key
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == rendered
    assert sent[1]["Parameters"] == [
        {"ParameterKey": "LaunchRoleArn", "ParameterValue": launch_role},
        {
            "ParameterKey": "ProductTemplateUrl",
            "ParameterValue": f"https://{bucket}.s3.{REGION}.amazonaws.com/{key}",
        },
        {"ParameterKey": "ProductVersion", "ParameterValue": key.split("-")[-1].removesuffix(".yml")},
        {"ParameterKey": "StudioRoleArn", "ParameterValue": STUDIO_ROLE},
    ]
    assert any(
        f"[{bootstrap.STEPS}/{bootstrap.STEPS}] Deploying the Service Catalog" in line for line in lines
    )
    secrets = aws_client("secretsmanager")
    secret = secrets.get_secret_value(SecretId=bootstrap.DEFAULT_SECRET_NAME)["SecretString"]
    assert json.loads(secret) == {"token": "glpat-sc-token"}
    tags = secrets.describe_secret(SecretId=bootstrap.DEFAULT_SECRET_NAME)["Tags"]
    assert {"Key": bootstrap.TOKEN_SERVER_TAG, "Value": "https://gitlab.example.com"} in tags
    # The platform settings are pinned in the rendered template that the product serves.
    assert "AllowedPattern: ^(?:https://gitlab\\.example\\.com)$" in rendered.decode()


def test_catalog_stack_gets_the_template_url_version_and_studio_role(build_dir: Path) -> None:
    params = bootstrap.stack_parameters(
        CATALOG_TEMPLATE,
        bootstrap.catalog_parameters(settings(build_dir), "b", REGION, "bundle/project-abc.yml", "abc"),
        "service-catalog.yml",
    )
    assert params == [
        {
            "ParameterKey": "ProductTemplateUrl",
            "ParameterValue": "https://b.s3.us-east-1.amazonaws.com/bundle/project-abc.yml",
        },
        {"ParameterKey": "ProductVersion", "ParameterValue": "abc"},
        {"ParameterKey": "StudioRoleArn", "ParameterValue": STUDIO_ROLE},
    ]


def test_an_existing_oidc_provider_for_the_issuer_is_reused_not_recreated(
    aws_client: Any, build_dir: Path
) -> None:
    iam = aws_client("iam")
    arn = iam.create_open_id_connect_provider(
        Url="https://gitlab.example.com", ClientIDList=["sts.amazonaws.com"], ThumbprintList=["a" * 40]
    )["OpenIDConnectProviderArn"]
    cfn = aws_client("cloudformation")
    wanted = settings(build_dir, gitlab_url="https://gitlab.example.com", oidc_provider_arn="")
    assert bootstrap.oidc_choice(wanted, cfn, iam, "no-such-stack") == ("existing", arn)
    other = settings(build_dir, gitlab_url="https://gitlab.other.example", oidc_provider_arn="")
    assert bootstrap.oidc_choice(other, cfn, iam, "no-such-stack") == ("create", "")
    assert bootstrap.oidc_choice(settings(build_dir), cfn, iam, "no-such-stack") == ("existing", OIDC_ARN)
    no_oidc = settings(build_dir, oidc_provider_arn="", use_oidc=False)
    assert bootstrap.oidc_choice(no_oidc, cfn, iam, "x") == ("none", "")


def test_the_real_catalog_template_gets_every_parameter_it_requires(build_dir: Path) -> None:
    body = bootstrap.CATALOG_TEMPLATE_PATH.read_text()
    offered = bootstrap.catalog_parameters(
        settings(build_dir),
        "b",
        REGION,
        "bundle/project-abc.yml",
        "abc",
        {"LaunchRoleArn": "arn:aws:iam::1:role/l"},
    )
    passed = {p["ParameterKey"] for p in bootstrap.stack_parameters(body, offered, "service-catalog.yml")}
    assert passed == {"ProductTemplateUrl", "ProductVersion", "LaunchRoleArn", "StudioRoleArn"}


def test_the_real_bootstrap_template_declares_what_bootstrap_passes() -> None:
    declared = bootstrap.template_parameters(bootstrap.BOOTSTRAP_TEMPLATE_PATH.read_text())
    assert {
        "GitLabServerUrl",
        "GitLabTokenSecretArn",
        "AdminPrincipalArns",
        "BundlePrefix",
        "PublishedTemplateKey",
        "CreateOidcProvider",
        "ExistingOidcProviderArn",
        "EnableS3ProjectTemplates",
    } <= set(declared)
    assert set(declared["CreateOidcProvider"]["AllowedValues"]) == {"create", "existing", "none"}
