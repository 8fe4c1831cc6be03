"""Resources moto's CloudFormation skips are created through the APIs, as AWS would have."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from scripts.sandbox.stack_gaps import fill_gaps

from .conftest import REGION

TEMPLATE = """
Parameters:
  Project: {Type: String, Default: demo}
  WithKey: {Type: String, Default: "yes"}
Conditions:
  HasKey: !Equals [!Ref WithKey, "yes"]
Resources:
  Bucket: {Type: AWS::S3::Bucket}
  Group:
    Type: AWS::SageMaker::ModelPackageGroup
    Properties:
      ModelPackageGroupName: !Sub ${Project}-p1
      ModelPackageGroupDescription: models
      Tags: [{Key: sagemaker:project-name, Value: !Ref Project}]
  KeySecret:
    Type: AWS::SecretsManager::Secret
    Condition: HasKey
    Properties:
      Name: !Sub ${Project}/key
      SecretString: !Sub '{"bucket": "${Bucket}"}'
  Repo:
    Type: AWS::SageMaker::CodeRepository
    Properties:
      GitConfig: {RepositoryUrl: https://example.com/x.git}
"""


def test_skipped_groups_and_secrets_are_created(aws_client: Callable[[str], Any], sandbox_aws: str) -> None:
    cfn = aws_client("cloudformation")
    cfn.create_stack(StackName="gaps", TemplateBody=TEMPLATE)
    bucket = cfn.describe_stack_resource(StackName="gaps", LogicalResourceId="Bucket")[
        "StackResourceDetail"]["PhysicalResourceId"]

    gaps = fill_gaps(cfn, aws_client, REGION, "123456789012", "gaps")

    assert gaps.created["Group"] == "demo-p1"
    group = aws_client("sagemaker").describe_model_package_group(ModelPackageGroupName="demo-p1")
    assert group["ModelPackageGroupDescription"] == "models"
    secret = aws_client("secretsmanager").get_secret_value(SecretId=gaps.created["KeySecret"])
    assert secret["Name"] == "demo/key"
    assert secret["SecretString"] == f'{{"bucket": "{bucket}"}}'
    assert set(gaps.not_created) == {"Repo"}


def test_resources_whose_condition_is_false_are_left_out(
    aws_client: Callable[[str], Any], sandbox_aws: str
) -> None:
    cfn = aws_client("cloudformation")
    cfn.create_stack(StackName="gaps", TemplateBody=TEMPLATE,
                     Parameters=[{"ParameterKey": "WithKey", "ParameterValue": "no"}])

    gaps = fill_gaps(cfn, aws_client, REGION, "123456789012", "gaps")

    assert "KeySecret" not in gaps.created
    assert "KeySecret" not in gaps.not_created


ACCESS_KEY_TEMPLATE = """
Resources:
  CiUser: {Type: AWS::IAM::User}
  CiKey:
    Type: AWS::IAM::AccessKey
    Properties: {UserName: !Ref CiUser, Status: Active}
  CiKeySecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: ci-key
      SecretString: !Sub '{"AccessKeyId": "${CiKey}", "SecretAccessKey": "${CiKey.SecretAccessKey}"}'
"""


def test_an_access_key_secret_holds_a_working_key_of_the_stack_user(
    aws_client: Callable[[str], Any], sandbox_aws: str
) -> None:
    cfn = aws_client("cloudformation")
    cfn.create_stack(StackName="keys", TemplateBody=ACCESS_KEY_TEMPLATE)
    user = cfn.describe_stack_resource(StackName="keys", LogicalResourceId="CiUser")[
        "StackResourceDetail"]["PhysicalResourceId"]

    gaps = fill_gaps(cfn, aws_client, REGION, "123456789012", "keys")

    stored = json.loads(
        aws_client("secretsmanager").get_secret_value(SecretId=gaps.created["CiKeySecret"])["SecretString"]
    )
    user_keys = aws_client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    assert stored["AccessKeyId"] in {k["AccessKeyId"] for k in user_keys}
    assert len(stored["SecretAccessKey"]) >= 20
