"""scripts/sandbox/moto_fidelity.py: moto's CloudFormation names SageMaker resources from their properties,
as AWS does (CloudFormation Template Reference: EndpointName, EndpointConfigName, ModelName)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from scripts.sandbox import moto_fidelity

pytestmark = pytest.mark.slow  # starts moto's CloudFormation for each case

TEMPLATE = {
    "Resources": {
        "Model": {
            "Type": "AWS::SageMaker::Model",
            "Properties": {
                "ModelName": "gitlab-mlops-p-1-staging-0123456789",
                "ExecutionRoleArn": "arn:aws:iam::123456789012:role/execution",
                "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1"},
            },
        },
        "EndpointConfig": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {
                "EndpointConfigName": "gitlab-mlops-p-1-staging-0123456789",
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]},
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                    }
                ],
            },
        },
        "Endpoint": {
            "Type": "AWS::SageMaker::Endpoint",
            "Properties": {
                "EndpointName": "abalone-p-1-staging",
                "EndpointConfigName": {"Fn::GetAtt": ["EndpointConfig", "EndpointConfigName"]},
            },
        },
    }
}  # fmt: skip


@mock_aws
def test_endpoint_config_and_model_carry_the_names_their_properties_give() -> None:
    moto_fidelity.honour_sagemaker_names()
    moto_fidelity.honour_sagemaker_names()  # idempotent
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="abalone-p-1-deploy-staging", TemplateBody=json.dumps(TEMPLATE)
    )
    sm = boto3.client("sagemaker", region_name="us-east-1")
    endpoint = sm.describe_endpoint(EndpointName="abalone-p-1-staging")
    assert endpoint["EndpointConfigName"] == "gitlab-mlops-p-1-staging-0123456789"
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["ProductionVariants"][0]["ModelName"] == "gitlab-mlops-p-1-staging-0123456789"
    assert sm.describe_model(ModelName="gitlab-mlops-p-1-staging-0123456789")["ModelName"].startswith(
        "gitlab-mlops-"
    )
