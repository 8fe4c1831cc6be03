"""scripts/bootstrap.py pure parts and AWS call shapes, with botocore's Stubber (no network, no moto)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from scripts import bootstrap

TOKEN = "glpat-unit-test-token-123"
REGION = "eu-west-1"


def client(service: str) -> Any:
    return boto3.client(
        service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y", endpoint_url=None
    )


@pytest.fixture
def cfn() -> Iterator[tuple[Any, Stubber]]:
    c = client("cloudformation")
    with Stubber(c) as stub:
        yield c, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def sm() -> Iterator[tuple[Any, Stubber]]:
    c = client("secretsmanager")
    with Stubber(c) as stub:
        yield c, stub
        stub.assert_no_pending_responses()


STUDIO_ROLE = "arn:aws:iam::123456789012:role/StudioUser"


def parse(*argv: str, env: dict[str, str] | None = None, stdin: str = "") -> bootstrap.Settings:
    """Settings as init.sh passes them; the default service-catalog mode gets the Studio role it needs."""
    extra = [] if "--mode" in argv or "--studio-role-arn" in argv else ["--studio-role-arn", STUDIO_ROLE]
    return bootstrap.parse_settings([*argv, *extra], env or {}, io.StringIO(stdin).read)


# --- arguments and token ------------------------------------------------------------------------------


def test_token_comes_from_the_environment_and_is_not_in_the_settings_repr() -> None:
    settings = parse("--region", REGION, env={"GITLAB_TOKEN": f"  {TOKEN}\n"})
    assert settings.token == TOKEN
    assert TOKEN not in repr(settings)


def test_token_stdin_wins_over_nothing_and_empty_stdin_is_an_error() -> None:
    assert parse("--token-stdin", stdin=TOKEN + "\n").token == TOKEN
    with pytest.raises(bootstrap.BootstrapError, match="standard input was empty"):
        parse("--token-stdin", stdin="\n")


def test_no_token_is_allowed_at_parse_time() -> None:
    assert parse().token is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--region", "Europe"], "not a region name"),
        (["--gitlab-url", "http://gitlab.example.com"], "must start with https://"),
        (["--studio-role-arn", "StudioRole"], "is not an ARN"),
        (["--bucket", "Bad_Bucket"], "bucket name 'Bad_Bucket' is invalid"),
        (
            [
                "--gitlab-url",
                "https://g.example.com",
                "--oidc-provider-arn",
                "arn:aws:iam::1:oidc-provider/g",
            ],
            "not both",
        ),
    ],
)
def test_bad_arguments_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(bootstrap.BootstrapError, match=message):
        parse(*argv)


def test_service_catalog_mode_without_the_studio_role_is_refused_at_parse_time() -> None:
    with pytest.raises(bootstrap.BootstrapError, match="--studio-role-arn is required in service-catalog"):
        bootstrap.parse_settings([], {}, io.StringIO("").read)
    assert parse("--mode", "s3-template").studio_role_arn == ""


def test_region_defaults_to_aws_region_then_aws_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert parse().region == "eu-central-1"
    monkeypatch.setenv("AWS_REGION", "eu-north-1")  # AWS_REGION wins, as in the SDKs and AWS CLI v2
    assert parse().region == "eu-north-1"
    assert parse("--region", "us-west-2").region == "us-west-2"


def _sts(error: Exception | None) -> Any:
    sts = client("sts")

    def answer(**_: Any) -> dict[str, str]:
        if error is not None:
            raise error
        return {"Account": "123456789012"}

    sts.get_caller_identity = answer  # type: ignore[method-assign]
    return sts


def test_identity_check_tells_an_unreachable_endpoint_from_bad_or_missing_credentials() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    assert bootstrap.check_identity(_sts(None)) == "123456789012"
    unreachable = EndpointConnectionError(endpoint_url="https://sts.eu-west-1.amazonaws.com/")
    with pytest.raises(bootstrap.BootstrapError, match=r"cannot reach AWS STS at https://sts\.eu") as gone:
        bootstrap.check_identity(_sts(unreachable))
    assert "no working AWS credentials" not in str(gone.value)
    with pytest.raises(bootstrap.BootstrapError, match="no working AWS credentials: Unable to locate"):
        bootstrap.check_identity(_sts(NoCredentialsError()))
    denied = ClientError({"Error": {"Code": "InvalidClientTokenId", "Message": "bad"}}, "GetCallerIdentity")
    with pytest.raises(bootstrap.BootstrapError, match="no working AWS credentials: InvalidClientTokenId"):
        bootstrap.check_identity(_sts(denied))


def test_defaults() -> None:
    settings = parse()
    assert (settings.mode, settings.prefix, settings.token_secret_name) == (
        "service-catalog",
        "bundle",
        "sagemaker-gitlab/token",
    )
    assert bootstrap.default_bucket("123456789012", REGION) == f"sagemaker-gitlab-mlops-123456789012-{REGION}"
    assert (
        bootstrap.oidc_provider_arn_for("aws", "123456789012", "https://gitlab.example.com")
        == "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"
    )


# --- template parameters -------------------------------------------------------------------------------

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  ProductTemplateUrl: {Type: String}
  StudioRoleArn: {Type: String, Default: ""}
  Owner: {Type: String, Default: platform}
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub "${AWS::StackName}-x"
      Tags: !If [HasRole, [], !Ref AWS::NoValue]
"""


def test_only_declared_parameters_are_passed() -> None:
    offered = {"ProductTemplateUrl": "https://b/k", "StudioRoleArn": "arn:aws:iam::1:role/r", "Unknown": "x"}
    assert bootstrap.stack_parameters(TEMPLATE, offered, "t.yml") == [
        {"ParameterKey": "ProductTemplateUrl", "ParameterValue": "https://b/k"},
        {"ParameterKey": "StudioRoleArn", "ParameterValue": "arn:aws:iam::1:role/r"},
    ]


def test_a_required_parameter_without_value_fails_before_any_call() -> None:
    with pytest.raises(bootstrap.BootstrapError, match=r"t\.yml needs parameter\(s\) ProductTemplateUrl"):
        bootstrap.stack_parameters(TEMPLATE, {"StudioRoleArn": "arn:aws:iam::1:role/r"}, "t.yml")


# --- change-set deploys ----------------------------------------------------------------------------------

STACK = "sagemaker-gitlab-mlops-service-catalog"
MISSING = {
    "service_error_code": "ValidationError",
    "service_message": f"Stack with id {STACK} does not exist",
}


def stack(status: str, outputs: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": STACK,
                "StackStatus": status,
                "CreationTime": "2026-01-01T00:00:00Z",
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()],
            }
        ]
    }


def change_set(status: str, reason: str = "") -> dict[str, Any]:
    return {"Status": status, "StatusReason": reason, "ChangeSetName": "c", "StackName": STACK}


def test_new_stack_is_created_through_an_explicit_create_change_set(cfn: tuple[Any, Stubber]) -> None:
    c, stub = cfn
    params = [{"ParameterKey": "ProductTemplateUrl", "ParameterValue": "https://b.s3/k"}]
    stub.add_client_error("describe_stacks", **MISSING)
    stub.add_response(
        "create_change_set",
        {"Id": "cs", "StackId": "s"},
        {
            "StackName": STACK,
            "ChangeSetName": ANY,
            "ChangeSetType": "CREATE",
            "Parameters": params,
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            "Tags": [],
            "TemplateBody": TEMPLATE,
        },
    )
    stub.add_response("describe_change_set", change_set("CREATE_COMPLETE"))
    stub.add_response("execute_change_set", {}, {"StackName": STACK, "ChangeSetName": ANY})
    stub.add_response("describe_stacks", stack("CREATE_COMPLETE"))
    stub.add_response("describe_stacks", stack("CREATE_COMPLETE", {"ProductId": "prod-1"}))
    log: list[str] = []
    outputs = bootstrap.deploy_stack(c, STACK, {"TemplateBody": TEMPLATE}, params, log.append, poll_seconds=0)
    assert outputs == {"ProductId": "prod-1"}
    assert log == [f"stack {STACK} created"]


def test_change_set_without_changes_is_success_and_is_cleaned_up(cfn: tuple[Any, Stubber]) -> None:
    c, stub = cfn
    stub.add_response("describe_stacks", stack("UPDATE_COMPLETE"))
    stub.add_response(
        "create_change_set",
        {"Id": "cs"},
        {
            "StackName": STACK,
            "ChangeSetName": ANY,
            "ChangeSetType": "UPDATE",
            "Parameters": [],
            "Capabilities": ANY,
            "Tags": [],
            "TemplateBody": ANY,
        },
    )
    stub.add_response(
        "describe_change_set",
        change_set(
            "FAILED", "The submitted information didn't contain changes. Submit different information."
        ),
    )
    stub.add_response("delete_change_set", {}, {"StackName": STACK, "ChangeSetName": ANY})
    stub.add_response("describe_stacks", stack("UPDATE_COMPLETE", {"PortfolioId": "port-1"}))
    log: list[str] = []
    assert bootstrap.deploy_stack(c, STACK, {"TemplateBody": TEMPLATE}, [], log.append, poll_seconds=0) == {
        "PortfolioId": "port-1"
    }
    assert log == [f"stack {STACK} unchanged"]


def test_failed_first_create_is_removed_and_the_reason_reported(cfn: tuple[Any, Stubber]) -> None:
    c, stub = cfn
    stub.add_client_error("describe_stacks", **MISSING)
    stub.add_response("create_change_set", {"Id": "cs"})
    stub.add_response("describe_change_set", change_set("CREATE_COMPLETE"))
    stub.add_response("execute_change_set", {})
    stub.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"))
    stub.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                {
                    "StackId": "s",
                    "EventId": "e1",
                    "StackName": STACK,
                    "Timestamp": "2026-01-01T00:00:00Z",
                    "LogicalResourceId": "Portfolio",
                    "ResourceStatus": "CREATE_FAILED",
                    "ResourceStatusReason": "Access denied for servicecatalog:CreatePortfolio",
                }
            ]
        },
    )
    with pytest.raises(bootstrap.BootstrapError, match="ROLLBACK_COMPLETE: Portfolio: Access denied"):
        bootstrap.deploy_stack(c, STACK, {"TemplateBody": TEMPLATE}, [], lambda _: None, poll_seconds=0)


def test_stack_left_in_rollback_complete_is_deleted_then_created(cfn: tuple[Any, Stubber]) -> None:
    c, stub = cfn
    stub.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"))
    stub.add_response("delete_stack", {}, {"StackName": STACK})
    stub.add_client_error("describe_stacks", **MISSING)
    stub.add_response(
        "create_change_set",
        {"Id": "cs"},
        {
            "StackName": STACK,
            "ChangeSetName": ANY,
            "ChangeSetType": "CREATE",
            "Parameters": [],
            "Capabilities": ANY,
            "Tags": [],
            "TemplateBody": ANY,
        },
    )
    stub.add_response("describe_change_set", change_set("CREATE_COMPLETE"))
    stub.add_response("execute_change_set", {})
    stub.add_response("describe_stacks", stack("CREATE_COMPLETE"))
    stub.add_response("describe_stacks", stack("CREATE_COMPLETE"))
    log: list[str] = []
    bootstrap.deploy_stack(c, STACK, {"TemplateBody": TEMPLATE}, [], log.append, poll_seconds=0)
    assert "deleting it first" in log[0] and log[-1] == f"stack {STACK} created"


def test_stack_busy_is_refused(cfn: tuple[Any, Stubber]) -> None:
    c, stub = cfn
    stub.add_response("describe_stacks", stack("UPDATE_IN_PROGRESS"))
    with pytest.raises(bootstrap.BootstrapError, match="UPDATE_IN_PROGRESS: wait until it finishes"):
        bootstrap.deploy_stack(c, STACK, {"TemplateBody": TEMPLATE}, [], lambda _: None, poll_seconds=0)


# --- the token secret --------------------------------------------------------------------------------------

SECRET = "sagemaker-gitlab/token"
ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{SECRET}-AbCdEf"


def test_secret_is_created_as_json_and_the_token_never_logged(sm: tuple[Any, Stubber]) -> None:
    c, stub = sm
    stub.add_client_error("describe_secret", service_error_code="ResourceNotFoundException")
    stub.add_response(
        "create_secret",
        {"ARN": ARN, "Name": SECRET},
        {"Name": SECRET, "SecretString": json.dumps({"token": TOKEN}), "Description": ANY},
    )
    log: list[str] = []
    assert bootstrap.ensure_token_secret(c, SECRET, TOKEN, log.append) == ARN
    assert log == [f"secret {SECRET} created"]


def test_same_token_writes_nothing_and_a_new_one_writes_a_version(sm: tuple[Any, Stubber]) -> None:
    c, stub = sm
    stub.add_response("describe_secret", {"ARN": ARN, "Name": SECRET})
    stub.add_response("get_secret_value", {"ARN": ARN, "SecretString": json.dumps({"token": TOKEN})})
    stub.add_response("describe_secret", {"ARN": ARN, "Name": SECRET})
    stub.add_response("get_secret_value", {"ARN": ARN, "SecretString": json.dumps({"token": "old"})})
    stub.add_response(
        "put_secret_value", {"ARN": ARN}, {"SecretId": SECRET, "SecretString": json.dumps({"token": TOKEN})}
    )
    log: list[str] = []
    bootstrap.ensure_token_secret(c, SECRET, TOKEN, log.append)
    bootstrap.ensure_token_secret(c, SECRET, TOKEN, log.append)
    assert log == [f"secret {SECRET} unchanged", f"secret {SECRET} updated with the new token"]
    assert not any(TOKEN in line for line in log)


def test_missing_token_and_missing_secret_is_an_error_naming_both_ways_to_give_it(
    sm: tuple[Any, Stubber],
) -> None:
    c, stub = sm
    stub.add_client_error("describe_secret", service_error_code="ResourceNotFoundException")
    with pytest.raises(bootstrap.BootstrapError, match="set GITLAB_TOKEN or pipe it with --token-stdin"):
        bootstrap.ensure_token_secret(c, SECRET, None, lambda _: None)


def test_existing_secret_is_kept_when_no_token_is_given(sm: tuple[Any, Stubber]) -> None:
    c, stub = sm
    stub.add_response("describe_secret", {"ARN": ARN, "Name": SECRET})
    log: list[str] = []
    assert bootstrap.ensure_token_secret(c, SECRET, None, log.append) == ARN
    assert "kept" in log[0]


# --- the bucket --------------------------------------------------------------------------------------------

BUCKET = "sagemaker-gitlab-mlops-123456789012-eu-west-1"
NOT_FOUND = {"service_error_code": "404", "http_status_code": 404}
BLOCK_ALL = {
    k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
}


@pytest.fixture
def s3() -> Iterator[tuple[Any, Stubber]]:
    c = client("s3")
    with Stubber(c) as stub:
        yield c, stub
        stub.assert_no_pending_responses()


def test_new_bucket_is_created_in_its_region_private_encrypted_versioned_and_tls_only(
    s3: tuple[Any, Stubber],
) -> None:
    c, stub = s3
    stub.add_client_error("head_bucket", **NOT_FOUND)
    stub.add_response(
        "create_bucket",
        {},
        {"Bucket": BUCKET, "CreateBucketConfiguration": {"LocationConstraint": REGION}},
    )
    stub.add_client_error(
        "get_bucket_encryption", service_error_code="ServerSideEncryptionConfigurationNotFoundError"
    )
    stub.add_response(
        "put_bucket_encryption", {}, {"Bucket": BUCKET, "ServerSideEncryptionConfiguration": ANY}
    )
    stub.add_client_error(
        "get_public_access_block", service_error_code="NoSuchPublicAccessBlockConfiguration"
    )
    stub.add_response(
        "put_public_access_block", {}, {"Bucket": BUCKET, "PublicAccessBlockConfiguration": BLOCK_ALL}
    )
    stub.add_response("get_bucket_versioning", {})
    stub.add_response(
        "put_bucket_versioning", {}, {"Bucket": BUCKET, "VersioningConfiguration": {"Status": "Enabled"}}
    )
    stub.add_client_error("get_bucket_policy", service_error_code="NoSuchBucketPolicy")
    stub.add_response(
        "put_bucket_policy",
        {},
        {"Bucket": BUCKET, "Policy": json.dumps(bootstrap.tls_only_policy(BUCKET), sort_keys=True)},
    )
    log: list[str] = []
    bootstrap.ensure_bucket(c, BUCKET, REGION, log.append)
    assert log[0] == f"bucket {BUCKET} created" and log[-1] == "TLS-only bucket policy set"


def test_configured_bucket_is_only_read(s3: tuple[Any, Stubber]) -> None:
    c, stub = s3
    stub.add_response("head_bucket", {})
    stub.add_response(
        "get_bucket_encryption",
        {
            "ServerSideEncryptionConfiguration": {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
            }
        },
    )
    stub.add_response("get_public_access_block", {"PublicAccessBlockConfiguration": BLOCK_ALL})
    stub.add_response("get_bucket_versioning", {"Status": "Enabled"})
    stub.add_response("get_bucket_policy", {"Policy": json.dumps(bootstrap.tls_only_policy(BUCKET))})
    log: list[str] = []
    bootstrap.ensure_bucket(c, BUCKET, REGION, log.append)
    assert log == [f"bucket {BUCKET} exists"]


def test_bucket_owned_by_someone_else_is_a_clear_error(s3: tuple[Any, Stubber]) -> None:
    c, stub = s3
    stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
    with pytest.raises(bootstrap.BootstrapError, match="cannot use it \\(403\\): pass another --bucket"):
        bootstrap.ensure_bucket(c, BUCKET, REGION, lambda _: None)
