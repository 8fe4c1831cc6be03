"""scripts/sandbox/iam_recorder.py: who made each call, and what of the request is kept (never secrets)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import boto3
from moto import mock_aws

from scripts.sandbox import iam_recorder
from scripts.sandbox.iam_recorder import Call

ACCOUNT = "123456789012"
LAMBDA = {"Service": "lambda.amazonaws.com"}
ALLOW_LAMBDA = {"Effect": "Allow", "Principal": LAMBDA, "Action": "sts:AssumeRole"}
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [ALLOW_LAMBDA]})


def test_the_access_key_region_and_service_come_from_the_sigv4_authorization_header() -> None:
    header = (
        "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261201/eu-west-1/sagemaker/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc"
    )
    assert iam_recorder.access_key_of({"Authorization": header}) == ("ASIAEXAMPLE", "eu-west-1", "sagemaker")
    assert iam_recorder.access_key_of({}) == ("", "", "")


@mock_aws
def test_a_key_resolves_to_the_role_it_was_issued_for_or_the_user_that_holds_it() -> None:
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName="ci-staging", Path="/gitlab-mlops/", AssumeRolePolicyDocument=TRUST)[
        "Role"
    ]
    assumed = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=role["Arn"], RoleSessionName="ci-job"
    )
    assert iam_recorder.principal_of(assumed["Credentials"]["AccessKeyId"], ACCOUNT) == role["Arn"]
    iam.create_user(UserName="ci-prod", Path="/gitlab-mlops/")
    key = iam.create_access_key(UserName="ci-prod")["AccessKey"]["AccessKeyId"]
    assert iam_recorder.principal_of(key, ACCOUNT) == f"arn:aws:iam::{ACCOUNT}:user/gitlab-mlops/ci-prod"
    assert iam_recorder.principal_of("AKIAUNKNOWN", ACCOUNT) == ""


def test_secret_values_and_tokens_are_never_recorded() -> None:
    response = SimpleNamespace(
        querystring={"WebIdentityToken": ["eyJ.secret.jwt"], "RoleArn": ["arn:aws:iam::1:role/r"]},
        body='{"SecretId": "s", "SecretString": "glpat-very-secret"}',
        uri="/",
        headers={},
    )
    params = iam_recorder._params(response)
    assert params["RoleArn"] == "arn:aws:iam::1:role/r" and params["SecretId"] == "s"
    assert "eyJ.secret.jwt" not in json.dumps(params) and "glpat-very-secret" not in json.dumps(params)


def test_s3_request_headers_moto_mixes_into_the_querystring_are_dropped() -> None:
    response = SimpleNamespace(querystring={"x-amz-acl": ["private"], "list-type": ["2"]}, body=b"", uri="/b",
                               headers={"x-amz-acl": "private"})  # fmt: skip
    assert iam_recorder._params(response) == {"list-type": "2", "__path": "/b"}


def test_calls_served_outside_moto_round_trip_through_the_calls_file(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    call = Call("sagemaker", "InvokeEndpoint", "arn:aws:iam::1:role/r", params={"EndpointName": "e"})
    iam_recorder.record_call(path, call)
    iam_recorder.record_call(path, call)
    assert list(iam_recorder.read(path)) == [call, call]
    assert list(iam_recorder.read(tmp_path / "none.jsonl")) == []
