"""scripts/admin/bootstrap (the package behind init.sh): pure parts and AWS call shapes (botocore Stubber)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from scripts.admin import bootstrap

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


GITLAB = ("--gitlab-url", "https://gitlab.example.com")
STUDIO_ROLE = "arn:aws:iam::123456789012:role/StudioUser"


def parse(*argv: str, env: dict[str, str] | None = None, stdin: str = "") -> bootstrap.Settings:
    """Settings as init.sh passes them; the default service-catalog mode gets the Studio role it needs."""
    given = list(argv) if "--gitlab-url" in argv else [*GITLAB, *argv]
    extra = [] if "--mode" in argv or "--studio-role-arn" in argv else ["--studio-role-arn", STUDIO_ROLE]
    return bootstrap.parse_settings([*given, *extra], env or {}, io.StringIO(stdin).read)


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
        (["--gitlab-url", "http://gitlab.example.com"], "must be an https:// server URL"),
        (["--gitlab-url", ""], "--gitlab-url is required"),
        (["--studio-role-arn", "StudioRole"], "is not an ARN"),
        (["--no-oidc", "--oidc-provider-arn", "arn:aws:iam::1:oidc-provider/g"], "not both"),
        (["--admin-principal-arn", "arn:aws:sts::123456789012:assumed-role/Admin/me"], "session ARNs"),
        (["--lambda-subnet-ids", "subnet-0a1b2c3d"], "go together"),
        (
            ["--lambda-subnet-ids", "sub-1", "--lambda-security-group-ids", "sg-0a1b2c3d"],
            "are not subnet ids",
        ),
        (["--token-secret-name", "my/token"], "must start with gitlab-mlops-platform/"),
        (["--gitlab-ca-bundle", "/nonexistent/ca.pem"], "is not a PEM file"),
    ],
)
def test_bad_arguments_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(bootstrap.BootstrapError, match=message):
        parse(*argv)


def test_service_catalog_mode_without_the_studio_role_is_refused_at_parse_time() -> None:
    with pytest.raises(bootstrap.BootstrapError, match="--studio-role-arn is required in service-catalog"):
        bootstrap.parse_settings(list(GITLAB), {}, io.StringIO("").read)
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

    sts.get_caller_identity = answer
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
    assert (settings.mode, settings.prefix, settings.token_secret_name, settings.use_oidc) == (
        "service-catalog",
        "bundle",
        "gitlab-mlops-platform/gitlab-token",
        True,
    )
    assert (
        bootstrap.bundle_bucket_name("123456789012", REGION) == f"gitlab-mlops-bundle-123456789012-{REGION}"
    )
    assert (
        bootstrap.oidc_provider_arn_for("aws", "123456789012", "https://gitlab.example.com")
        == "arn:aws:iam::123456789012:oidc-provider/gitlab.example.com"
    )


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("arn:aws:iam::123456789012:user/ops/alice", "arn:aws:iam::123456789012:user/ops/alice"),
        ("arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root"),
    ],
)
def test_the_admin_principal_of_a_user_or_root_caller(caller: str, expected: str) -> None:
    assert bootstrap.principal_arn(None, caller) == expected


def test_the_admin_principal_of_an_assumed_role_is_the_role_with_its_path() -> None:
    iam = client("iam")
    with Stubber(iam) as stub:
        role = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1"
        stub.add_response(
            "get_role",
            {
                "Role": {
                    "Path": "/aws-reserved/sso.amazonaws.com/",
                    "RoleName": "AWSReservedSSO_Admin_1",
                    "RoleId": "AROAEXAMPLE12345678",
                    "Arn": role,
                    "CreateDate": "2026-01-01T00:00:00Z",
                    "AssumeRolePolicyDocument": "{}",
                }
            },
            {"RoleName": "AWSReservedSSO_Admin_1"},
        )
        assert (
            bootstrap.principal_arn(iam, "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_1/me")
            == role
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

STACK = "gitlab-mlops-service-catalog"
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

SECRET = "gitlab-mlops-platform/gitlab-token"
ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{SECRET}-AbCdEf"
URL = "https://gitlab.example.com"
BOUND = [{"Key": "gitlab-mlops:gitlab-url", "Value": URL}]


def test_secret_is_created_as_json_bound_to_its_server_and_the_token_never_logged(
    sm: tuple[Any, Stubber],
) -> None:
    c, stub = sm
    stub.add_client_error("describe_secret", service_error_code="ResourceNotFoundException")
    stub.add_response(
        "create_secret",
        {"ARN": ARN, "Name": SECRET},
        {"Name": SECRET, "SecretString": json.dumps({"token": TOKEN}), "Description": ANY, "Tags": BOUND},
    )
    log: list[str] = []
    assert bootstrap.ensure_token_secret(c, SECRET, TOKEN, URL, log.append) == ARN
    assert log == [f"secret {SECRET} created, bound to {URL}"]


def test_same_token_writes_nothing_and_a_new_one_writes_a_version(sm: tuple[Any, Stubber]) -> None:
    c, stub = sm
    stub.add_response("describe_secret", {"ARN": ARN, "Name": SECRET, "Tags": BOUND})
    stub.add_response("get_secret_value", {"ARN": ARN, "SecretString": json.dumps({"token": TOKEN})})
    stub.add_response("describe_secret", {"ARN": ARN, "Name": SECRET, "Tags": BOUND})
    stub.add_response("get_secret_value", {"ARN": ARN, "SecretString": json.dumps({"token": "old"})})
    stub.add_response(
        "put_secret_value", {"ARN": ARN}, {"SecretId": SECRET, "SecretString": json.dumps({"token": TOKEN})}
    )
    log: list[str] = []
    bootstrap.ensure_token_secret(c, SECRET, TOKEN, URL, log.append)
    bootstrap.ensure_token_secret(c, SECRET, TOKEN, URL, log.append)
    assert log == [f"secret {SECRET} unchanged", f"secret {SECRET} updated with the new token"]
    assert not any(TOKEN in line for line in log)


def test_a_new_token_for_a_new_server_rebinds_the_secret(sm: tuple[Any, Stubber]) -> None:
    c, stub = sm
    stub.add_response("describe_secret", {"ARN": ARN, "Name": SECRET, "Tags": BOUND})
    stub.add_response("get_secret_value", {"ARN": ARN, "SecretString": json.dumps({"token": "old"})})
    stub.add_response("put_secret_value", {"ARN": ARN}, {"SecretId": SECRET, "SecretString": ANY})
    stub.add_response(
        "tag_resource",
        {},
        {"SecretId": SECRET, "Tags": [{"Key": "gitlab-mlops:gitlab-url", "Value": "https://new.example"}]},
    )
    log: list[str] = []
    bootstrap.ensure_token_secret(c, SECRET, TOKEN, "https://new.example", log.append)
    assert log[-1] == f"secret {SECRET} bound to https://new.example"


def test_a_stored_token_is_never_moved_to_another_server_without_a_new_token(sm: tuple[Any, Stubber]) -> None:
    c, stub = sm
    stub.add_response("describe_secret", {"ARN": ARN, "Name": SECRET, "Tags": BOUND})
    with pytest.raises(
        bootstrap.BootstrapError, match="holds a token for https://gitlab.example.com, not https://new"
    ):
        bootstrap.ensure_token_secret(c, SECRET, None, "https://new.example", lambda _: None)


def test_missing_token_and_missing_secret_is_an_error_naming_both_ways_to_give_it(
    sm: tuple[Any, Stubber],
) -> None:
    c, stub = sm
    stub.add_client_error("describe_secret", service_error_code="ResourceNotFoundException")
    with pytest.raises(bootstrap.BootstrapError, match="set GITLAB_TOKEN or pipe it with --token-stdin"):
        bootstrap.ensure_token_secret(c, SECRET, None, URL, lambda _: None)


def test_existing_secret_is_kept_when_no_token_is_given(sm: tuple[Any, Stubber]) -> None:
    c, stub = sm
    stub.add_response("describe_secret", {"ARN": ARN, "Name": SECRET, "Tags": BOUND})
    log: list[str] = []
    assert bootstrap.ensure_token_secret(c, SECRET, None, URL, log.append) == ARN
    assert "kept" in log[0]
