"""Model names as the inference server looks them up."""

from __future__ import annotations

from scripts.sandbox.inference import model_name


def test_a_model_arn_is_reduced_to_the_name_describe_model_takes() -> None:
    # moto's CloudFormation writes this ARN into an endpoint config after a stack update replaced the model
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model/sagemaker-p-deploy-staging-Model-7JVT1OW2TV30"
    assert model_name(arn) == "sagemaker-p-deploy-staging-Model-7JVT1OW2TV30"
    assert model_name("plain-name") == "plain-name"
