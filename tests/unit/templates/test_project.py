"""templates/project.yml: parameters, conditions, the custom resource contract, IAM scoping, outputs."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest
from mlops_common import contract

from tests.unit.templates.cfn import (
    ACCOUNT,
    REGION,
    Evaluator,
    as_list,
    load,
    parameter_values,
    policy_documents,
)

TEMPLATE = load("project.yml")
PARAMS = TEMPLATE["Parameters"]
RESOURCES = TEMPLATE["Resources"]

PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com"
RENDERED = {
    "SageMakerProjectName": "abalone",
    "SageMakerProjectId": "p-abc123def456",
    "BundleBucket": "bundle-bucket",
    "CheckinLambdaKey": "bundle/seedcode_checkin-111111111111.zip",
    "TriggerLambdaKey": "bundle/pipeline_trigger-222222222222.zip",
    "ModelBuildSeedKey": "bundle/model-build-333333333333.zip",
    "ModelDeploySeedKey": "bundle/model-deploy-444444444444.zip",
    "GitLabOidcProviderArn": PROVIDER,
}
SEED_DATA = {
    "SeedRepositories.ModelBuildPath": "ml/team/abalone-model-build",
    "SeedRepositories.ModelDeployPath": "ml/team/abalone-model-deploy",
    "SeedRepositories.ModelBuildProjectId": "101",
    "SeedRepositories.ModelDeployProjectId": "102",
    "SeedRepositories.ModelBuildCloneUrl": "https://gitlab.example.com/ml/team/abalone-model-build.git",
    "SeedRepositories.ModelDeployCloneUrl": "https://gitlab.example.com/ml/team/abalone-model-deploy.git",
    "ArtifactsBucket.Arn": "arn:aws:s3:::sagemaker-p-abc123def456-123456789012-us-east-1",
    "SageMakerExecutionRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/sagemaker-gitlab/exec",
    "TriggerDeadLetterQueue.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:dlq",
    "ModelApprovedRule.Arn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/approved",
}


def evaluator(**given: Any) -> Evaluator:
    return Evaluator(TEMPLATE, parameter_values(TEMPLATE, **{**RENDERED, **given}), SEED_DATA)


def matches(parameter: str, value: str) -> bool:
    spec = PARAMS[parameter]
    return re.fullmatch(spec["AllowedPattern"], value) is not None and len(value) <= spec.get(
        "MaxLength", 10**6
    )


# --- parameters --------------------------------------------------------------------------------------

USER_PARAMETERS = {
    "SageMakerProjectName", "SageMakerProjectId", "GitLabServerUrl", "GitLabGroup",
    "ModelBuildRepositoryName", "ModelDeployRepositoryName", "GitLabTokenSecretName", "CiAuthMode",
    "RepositoryDeletionPolicy", "LambdaSubnetIds", "LambdaSecurityGroupIds", "GitLabCaBundleS3Uri",
}  # fmt: skip
BOOTSTRAP_PARAMETERS = {
    "BundleBucket", "CheckinLambdaKey", "TriggerLambdaKey", "ModelBuildSeedKey", "ModelDeploySeedKey",
    "GitLabOidcProviderArn",
}  # fmt: skip


def test_parameters_are_exactly_the_agreed_ones() -> None:
    assert set(PARAMS) == USER_PARAMETERS | BOOTSTRAP_PARAMETERS


def test_every_parameter_has_a_description_and_constrained_strings_explain_themselves() -> None:
    for name, spec in PARAMS.items():
        assert spec.get("Description"), name
        if "AllowedPattern" in spec:
            assert spec.get("ConstraintDescription"), f"{name} has a pattern but no readable error"


def test_user_parameters_are_grouped_and_labelled_for_studio() -> None:
    interface = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for group in interface["ParameterGroups"] for p in group["Parameters"]]
    assert len(grouped) == len(set(grouped))
    # SageMaker fills in the project name and id itself; everything else is in a group.
    assert set(grouped) == set(PARAMS) - {"SageMakerProjectName", "SageMakerProjectId"}
    assert set(interface["ParameterLabels"]) <= set(PARAMS)


@pytest.mark.parametrize(
    "url", ["https://gitlab.com", "https://gitlab.example.com", "https://git.corp.example:8443/gitlab"]
)
def test_gitlab_url_accepts_https(url: str) -> None:
    assert matches("GitLabServerUrl", url)


@pytest.mark.parametrize(
    "url",
    ["http://gitlab.com", "https://gitlab.com/", "gitlab.com", "ftp://gitlab.com", "https://", "https://gitlab.com/a?b=c",
     "HTTP://gitlab.com", " https://gitlab.com"],
)  # fmt: skip
def test_gitlab_url_rejects_anything_but_https_without_trailing_slash(url: str) -> None:
    assert not matches("GitLabServerUrl", url)
    assert "https://" in PARAMS["GitLabServerUrl"]["ConstraintDescription"]


@pytest.mark.parametrize("group", ["", "ml", "ml/team", "ml-platform/team.a/sub_group", "4711"])
def test_gitlab_group_accepts_paths_ids_and_empty(group: str) -> None:
    assert matches("GitLabGroup", group)


@pytest.mark.parametrize("group", ["/ml", "ml/", "ml//team", "ml team", "-ml", "ml/-x"])
def test_gitlab_group_rejects_malformed_paths(group: str) -> None:
    assert not matches("GitLabGroup", group)


@pytest.mark.parametrize("parameter", ["ModelBuildRepositoryName", "ModelDeployRepositoryName"])
def test_repository_names(parameter: str) -> None:
    for good in ("", "model-build", "abalone_build.v2"):
        assert matches(parameter, good)
    for bad in ("-build", "ml/build", "build repo", ".hidden"):
        assert not matches(parameter, bad)


def test_token_secret_takes_a_name_or_a_full_arn_but_not_a_partial_one() -> None:
    assert matches("GitLabTokenSecretName", "sagemaker-gitlab/token")
    assert matches("GitLabTokenSecretName", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab-AbC123")
    assert not matches("GitLabTokenSecretName", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab")
    assert not matches("GitLabTokenSecretName", "")


def test_ca_bundle_is_empty_or_an_s3_uri() -> None:
    assert matches("GitLabCaBundleS3Uri", "")
    assert matches("GitLabCaBundleS3Uri", "s3://corp-certs/gitlab/ca.pem")
    for bad in ("https://corp-certs/ca.pem", "s3://corp-certs", "s3://Corp/ca.pem"):
        assert not matches("GitLabCaBundleS3Uri", bad)


def test_choices_and_their_defaults() -> None:
    assert PARAMS["CiAuthMode"]["AllowedValues"] == list(contract.AUTH_MODES)
    assert PARAMS["CiAuthMode"]["Default"] == contract.AUTH_MODE_OIDC
    assert PARAMS["RepositoryDeletionPolicy"]["AllowedValues"] == ["retain", "archive", "delete"]
    assert PARAMS["RepositoryDeletionPolicy"]["Default"] == "retain"
    for name in ("LambdaSubnetIds", "LambdaSecurityGroupIds"):
        assert PARAMS[name]["Type"] == "CommaDelimitedList"
        assert PARAMS[name]["Default"] == ""


def test_bootstrap_parameters_have_no_usable_default_in_the_source() -> None:
    """Deploying the unrendered source must fail on parameters, not on a missing S3 object."""
    for name in BOOTSTRAP_PARAMETERS - {"GitLabOidcProviderArn"}:
        assert "Default" not in PARAMS[name], name
    assert PARAMS["GitLabOidcProviderArn"]["Default"] == ""
    assert matches("CheckinLambdaKey", "bundle/seedcode_checkin-abc.zip")
    assert not matches("CheckinLambdaKey", "")
    assert not matches("BundleBucket", "")


def test_longest_allowed_project_name_and_id_give_a_valid_model_package_group() -> None:
    name = "a" * PARAMS["SageMakerProjectName"]["MaxLength"]
    project_id = "p-" + "b" * (PARAMS["SageMakerProjectId"]["MaxLength"] - 2)
    assert matches("SageMakerProjectName", name) and matches("SageMakerProjectId", project_id)
    group = contract.model_package_group_name(name, project_id)
    assert (
        evaluator(SageMakerProjectName=name, SageMakerProjectId=project_id).properties("ModelPackageGroup")[
            "ModelPackageGroupName"
        ]
        == group
    )
    # The CI role's fixed name must also fit IAM's 64 characters.
    role = evaluator(SageMakerProjectName=name, SageMakerProjectId=project_id).properties("CiRole")[
        "RoleName"
    ]
    assert len(role) <= 64


def test_project_names_with_uppercase_are_refused_because_sagemaker_arns_are_lowercase() -> None:
    assert matches("SageMakerProjectName", "abalone-v2")
    assert not matches("SageMakerProjectName", "Abalone")
    assert not matches("SageMakerProjectName", "a--")


def test_rules_give_readable_errors_for_inconsistent_choices() -> None:
    rules = TEMPLATE["Rules"]
    assert rules["OidcNeedsProvider"]["RuleCondition"] == {"Fn::Equals": [{"Ref": "CiAuthMode"}, "oidc"]}
    assert "GitLabOidcProviderArn" in rules["OidcNeedsProvider"]["Assertions"][0]["AssertDescription"]
    assert "LambdaSecurityGroupIds" in rules["VpcNeedsSecurityGroups"]["Assertions"][0]["AssertDescription"]


# --- conditions --------------------------------------------------------------------------------------


def test_oidc_mode_creates_the_role_and_no_user_or_keys() -> None:
    ev = evaluator(CiAuthMode="oidc")
    assert ev.resource_exists("CiRole")
    assert not any(ev.resource_exists(r) for r in ("CiUser", "CiAccessKey", "CiAccessKeySecret"))
    props = ev.properties("SeedRepositories")
    assert (
        props["CiRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/sagemaker-gitlab/abalone-p-abc123def456-gitlab-ci"
    )
    assert props["CiAccessKeySecretArn"] == ""


def test_the_role_arn_handed_to_gitlab_is_the_arn_the_ci_role_gets() -> None:
    ev = evaluator(CiAuthMode="oidc")
    role = ev.properties("CiRole")
    built = f"arn:aws:iam::{ACCOUNT}:role{role['Path']}{role['RoleName']}"
    assert ev.properties("SeedRepositories")["CiRoleArn"] == built


def test_access_key_mode_creates_user_key_and_secret_and_no_role() -> None:
    ev = evaluator(CiAuthMode="access-keys", GitLabOidcProviderArn="")
    assert not ev.resource_exists("CiRole")
    assert all(ev.resource_exists(r) for r in ("CiUser", "CiAccessKey", "CiAccessKeySecret"))
    props = ev.properties("SeedRepositories")
    assert props["CiRoleArn"] == ""
    assert props["CiAccessKeySecretArn"] == "<CiAccessKeySecret>"
    secret = json.loads(
        Evaluator(
            TEMPLATE, ev.refs, {"CiAccessKey.SecretAccessKey": "S3CR3T", "CiAccessKey": "AKIA1"}
        ).properties("CiAccessKeySecret")["SecretString"]
    )
    assert secret == {"AccessKeyId": "AKIA1", "SecretAccessKey": "S3CR3T"}
    policy = ev.properties("CiPolicy")
    assert policy["Users"] == ["<CiUser>"] and "Roles" not in policy


def test_vpc_config_only_when_subnets_are_given() -> None:
    for function in ("SeedCheckinFunction", "TriggerFunction"):
        assert "VpcConfig" not in evaluator().properties(function)
        vpc = evaluator(LambdaSubnetIds="subnet-1,subnet-2", LambdaSecurityGroupIds="sg-1").properties(
            function
        )
        assert vpc["VpcConfig"] == {"SubnetIds": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}


def test_repository_names_default_to_the_project_name() -> None:
    props = evaluator().properties("SeedRepositories")
    assert props["ModelBuildRepositoryName"] == "abalone-model-build"
    assert props["ModelDeployRepositoryName"] == "abalone-model-deploy"
    props = evaluator(ModelBuildRepositoryName="b", ModelDeployRepositoryName="d").properties(
        "SeedRepositories"
    )
    assert (props["ModelBuildRepositoryName"], props["ModelDeployRepositoryName"]) == ("b", "d")


@pytest.mark.parametrize(
    ("given", "expected_arn", "policy_resource"),
    [
        ("gitlab/token", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab/token",
         f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab/token-??????"),
        (f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab-AbC123",
         f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab-AbC123",
         f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab-AbC123"),
    ],
)  # fmt: skip
def test_token_secret_name_or_arn_becomes_an_arn_and_a_matching_policy_resource(
    given: str, expected_arn: str, policy_resource: str
) -> None:
    ev = evaluator(GitLabTokenSecretName=given)
    assert ev.properties("SeedRepositories")["GitLabTokenSecretArn"] == expected_arn
    assert (
        ev.properties("TriggerFunction")["Environment"]["Variables"]["GITLAB_TOKEN_SECRET_ARN"]
        == expected_arn
    )
    for role in ("SeedCheckinRole", "TriggerRole"):
        statements = ev.properties(role)["Policies"][0]["PolicyDocument"]["Statement"]
        token = next(s for s in statements if s["Sid"] == "ReadGitLabToken")
        assert token["Resource"] == policy_resource
        # The real secret ARN (with its random suffix) is covered by the policy resource.
        assert fnmatch.fnmatchcase(f"{expected_arn}-XyZ789" if "??????" in policy_resource else expected_arn,
                                   policy_resource)  # fmt: skip


def test_ca_bundle_object_is_readable_only_when_configured() -> None:
    for role in ("SeedCheckinRole", "TriggerRole"):
        sids = {s["Sid"] for s in evaluator().properties(role)["Policies"][0]["PolicyDocument"]["Statement"]}
        assert "ReadCaBundle" not in sids
        statements = evaluator(GitLabCaBundleS3Uri="s3://certs/gitlab/ca.pem").properties(role)["Policies"][
            0
        ]["PolicyDocument"]["Statement"]
        ca = next(s for s in statements if s["Sid"] == "ReadCaBundle")
        assert ca == {"Sid": "ReadCaBundle", "Effect": "Allow", "Action": "s3:GetObject",
                      "Resource": "arn:aws:s3:::certs/gitlab/ca.pem"}  # fmt: skip


# --- the seed check-in custom resource ---------------------------------------------------------------

CUSTOM_RESOURCE_PROPERTIES = {
    "ServiceToken", "ProjectName", "ProjectId", "ProjectArn", "Region",
    "GitLabUrl", "GitLabGroup", "GitLabTokenSecretArn", "GitLabCaBundleS3Uri",
    "ModelBuildRepositoryName", "ModelDeployRepositoryName", "DeletionPolicy", "DefaultBranch",
    "SeedBucket", "ModelBuildSeedKey", "ModelDeploySeedKey",
    "ArtifactBucket", "ModelPackageGroupName", "SageMakerExecutionRoleArn",
    "CiAuthMode", "CiRoleArn", "CiAccessKeySecretArn",
}  # fmt: skip


def test_custom_resource_properties_are_exactly_the_agreed_ones() -> None:
    resource = RESOURCES["SeedRepositories"]
    assert resource["Type"] == "Custom::GitLabSeedRepositories"
    assert set(resource["Properties"]) - {"ServiceTimeout"} == CUSTOM_RESOURCE_PROPERTIES


def test_custom_resource_values() -> None:
    props = evaluator(GitLabGroup="ml/team", RepositoryDeletionPolicy="archive").properties(
        "SeedRepositories"
    )
    assert props["ProjectName"] == "abalone" and props["ProjectId"] == "p-abc123def456"
    assert props["ProjectArn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:project/abalone"
    assert props["Region"] == REGION
    assert props["GitLabUrl"] == "https://gitlab.com" and props["GitLabGroup"] == "ml/team"
    assert props["DeletionPolicy"] == "archive" and props["DefaultBranch"] == "main"
    assert props["SeedBucket"] == RENDERED["BundleBucket"]
    assert props["ModelBuildSeedKey"] == RENDERED["ModelBuildSeedKey"]
    assert props["ModelDeploySeedKey"] == RENDERED["ModelDeploySeedKey"]
    assert props["ModelPackageGroupName"] == contract.model_package_group_name("abalone", "p-abc123def456")
    assert props["ServiceToken"] == "<SeedCheckinFunction.Arn>"
    assert all(isinstance(v, str) for k, v in props.items() if k != "ServiceTimeout")


def test_a_stuck_custom_resource_fails_in_minutes_and_not_before_the_lambda_can_answer() -> None:
    timeout = RESOURCES["SeedRepositories"]["Properties"]["ServiceTimeout"]
    lambda_timeout = RESOURCES["SeedCheckinFunction"]["Properties"]["Timeout"]
    assert lambda_timeout < timeout <= 600


def test_custom_resource_waits_for_the_group_and_runs_without_lambda_retries() -> None:
    assert "ModelPackageGroup" in RESOURCES["SeedRepositories"]["DependsOn"]
    assert RESOURCES["SeedCheckinInvokeConfig"]["Properties"]["MaximumRetryAttempts"] == 0


# --- Lambdas -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "handler", "key"),
    [("SeedCheckinFunction", "seedcode_checkin.handler.handler", "CheckinLambdaKey"),
     ("TriggerFunction", "pipeline_trigger.handler.handler", "TriggerLambdaKey")],
)  # fmt: skip
def test_lambdas_run_current_python_on_arm_from_the_bundle(function: str, handler: str, key: str) -> None:
    props = evaluator().properties(function)
    assert props["Runtime"] == "python3.13" and props["Architectures"] == ["arm64"]
    assert props["Handler"] == handler
    assert props["Code"] == {"S3Bucket": RENDERED["BundleBucket"], "S3Key": RENDERED[key]}
    assert props["LoggingConfig"]["LogGroup"].startswith("<")  # its own log group, with retention


def test_trigger_environment_is_exactly_the_agreed_one() -> None:
    env = evaluator().properties("TriggerFunction")["Environment"]["Variables"]
    assert env == {
        "GITLAB_URL": "https://gitlab.com",
        "GITLAB_TOKEN_SECRET_ARN": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:sagemaker-gitlab/token",
        "GITLAB_CA_BUNDLE_S3_URI": "",
        "DEPLOY_PROJECT_ID": "102",
        "DEPLOY_REF": "main",
        "MODEL_PACKAGE_GROUP_NAME": "abalone-p-abc123def456",
    }
    raw = RESOURCES["TriggerFunction"]["Properties"]["Environment"]["Variables"]
    assert raw["DEPLOY_PROJECT_ID"] == {"Fn::GetAtt": ["SeedRepositories", "ModelDeployProjectId"]}
    assert env["DEPLOY_REF"] == evaluator().properties("SeedRepositories")["DefaultBranch"]


def test_trigger_failures_are_retried_and_end_in_the_dead_letter_queue() -> None:
    ev = evaluator()
    assert ev.properties("TriggerFunction")["DeadLetterConfig"] == {
        "TargetArn": SEED_DATA["TriggerDeadLetterQueue.Arn"]
    }
    assert ev.properties("TriggerInvokeConfig")["MaximumRetryAttempts"] >= 1
    target = ev.properties("ModelApprovedRule")["Targets"][0]
    assert target["Arn"] == "<TriggerFunction.Arn>"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert target["DeadLetterConfig"] == {"Arn": SEED_DATA["TriggerDeadLetterQueue.Arn"]}
    queue_statements = ev.properties("TriggerDeadLetterQueuePolicy")["PolicyDocument"]["Statement"]
    allow = next(s for s in queue_statements if s["Effect"] == "Allow")
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": SEED_DATA["ModelApprovedRule.Arn"]}}
    assert ev.properties("TriggerDeadLetterQueue")["SqsManagedSseEnabled"] is True
    permission = ev.properties("TriggerPermission")
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == SEED_DATA["ModelApprovedRule.Arn"]


def test_rule_matches_only_approvals_in_this_projects_group() -> None:
    pattern = evaluator().properties("ModelApprovedRule")["EventPattern"]
    assert pattern == {
        "source": [contract.EVENT_SOURCE],
        "detail-type": [contract.EVENT_DETAIL_TYPE],
        "detail": {
            "ModelPackageGroupName": ["abalone-p-abc123def456"],
            "ModelApprovalStatus": [contract.APPROVED],
        },
    }


# --- storage -----------------------------------------------------------------------------------------


def test_artifacts_bucket_is_encrypted_private_versioned_tls_only_and_retained() -> None:
    bucket = RESOURCES["ArtifactsBucket"]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    props = evaluator().properties("ArtifactsBucket")
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in ("aws:kms", "AES256")
    assert (
        all(props["PublicAccessBlockConfiguration"].values())
        and len(props["PublicAccessBlockConfiguration"]) == 4
    )
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert any("NoncurrentVersionExpiration" in r for r in props["LifecycleConfiguration"]["Rules"])
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", props["BucketName"])
    deny = evaluator().properties("ArtifactsBucketPolicy")["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {
        SEED_DATA["ArtifactsBucket.Arn"],
        SEED_DATA["ArtifactsBucket.Arn"] + "/*",
    }


def test_model_package_group_is_named_by_contract_and_retained() -> None:
    group = RESOURCES["ModelPackageGroup"]
    assert group["DeletionPolicy"] == "Retain"
    assert evaluator().properties("ModelPackageGroup")["ModelPackageGroupName"] == "abalone-p-abc123def456"


def test_taggable_resources_carry_the_sagemaker_project_tags() -> None:
    ev = evaluator(CiAuthMode="access-keys")
    untaggable = {"AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::IAM::RolePolicy",
                  "AWS::IAM::ManagedPolicy", "AWS::IAM::AccessKey", "AWS::Lambda::Permission",
                  "AWS::Lambda::EventInvokeConfig",
                  "Custom::GitLabSeedRepositories"}  # fmt: skip
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] in untaggable or not Evaluator(TEMPLATE, ev.refs, SEED_DATA).resource_exists(
            logical_id
        ):
            continue
        tags = {t["Key"]: t["Value"] for t in ev.properties(logical_id).get("Tags", [])}
        assert tags.get("sagemaker:project-name") == "abalone", logical_id
        assert tags.get("sagemaker:project-id") == "p-abc123def456", logical_id


def test_studio_code_repositories_point_at_the_clone_urls() -> None:
    ev = evaluator()
    assert (
        ev.properties("ModelBuildCodeRepository")["GitConfig"]["RepositoryUrl"]
        == SEED_DATA["SeedRepositories.ModelBuildCloneUrl"]
    )
    assert (
        ev.properties("ModelDeployCodeRepository")["GitConfig"]["RepositoryUrl"]
        == SEED_DATA["SeedRepositories.ModelDeployCloneUrl"]
    )


# --- IAM ---------------------------------------------------------------------------------------------

# Actions IAM cannot scope to a resource: the only statements allowed to use Resource "*".
STAR_RESOURCE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}
MODES = [
    {"CiAuthMode": "oidc"},
    {"CiAuthMode": "access-keys", "GitLabOidcProviderArn": ""},
    {"LambdaSubnetIds": "subnet-1", "LambdaSecurityGroupIds": "sg-1", "GitLabCaBundleS3Uri": "s3://c/ca.pem"},
]


@pytest.mark.parametrize("given", MODES)
def test_iam_statements_name_their_actions_and_resources(given: dict[str, str]) -> None:
    documents = policy_documents(evaluator(**given))
    assert len(documents) >= 5
    for name, document in documents:
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow", name
            actions = as_list(statement["Action"])
            for action in actions:
                assert "*" not in action, f"{name}: wildcard action {action}"
            resources = as_list(statement["Resource"])
            if "*" in resources:
                assert set(actions) <= STAR_RESOURCE_ACTIONS, f"{name}: Resource '*' for {actions}"
                assert resources == ["*"]


def test_every_project_principal_has_the_path_and_the_bootstrap_boundary() -> None:
    bootstrap = load("bootstrap.yml")["Resources"]["ProjectPermissionsBoundary"]["Properties"]
    boundary = f"arn:aws:iam::{ACCOUNT}:policy{bootstrap['Path']}{bootstrap['ManagedPolicyName']}"
    for mode in MODES[:2]:
        ev = evaluator(**mode)
        for logical_id, resource in RESOURCES.items():
            if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::User") and ev.resource_exists(logical_id):
                props = ev.properties(logical_id)
                assert props["Path"] == "/sagemaker-gitlab/", logical_id
                assert props["PermissionsBoundary"] == boundary, logical_id
        assert ev.properties("CiPolicy")["Path"] == "/sagemaker-gitlab/"


def test_ci_can_pass_only_the_execution_role_and_only_to_sagemaker() -> None:
    statements = evaluator().properties("CiPolicy")["PolicyDocument"]["Statement"]
    passes = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    assert passes == [next(s for s in statements if s["Sid"] == "PassExecutionRole")]
    assert passes[0]["Resource"] == SEED_DATA["SageMakerExecutionRole.Arn"]
    assert passes[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_ci_pipeline_rights_cover_the_build_seeds_pipeline_and_its_executions() -> None:
    statements = {s["Sid"]: s for s in evaluator().properties("CiPolicy")["PolicyDocument"]["Statement"]}
    base = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/"
    # seedcode/model-build's run-pipeline defaults the pipeline name to <project-name>-model-build.
    for arn in (f"{base}abalone-model-build", f"{base}abalone-model-build/execution/abc123"):
        assert any(fnmatch.fnmatchcase(arn, p) for p in statements["Pipeline"]["Resource"]), arn
    for arn in (f"{base}abalone-other", f"{base}abalone-model-build-x"):
        assert not any(fnmatch.fnmatchcase(arn, p) for p in statements["Pipeline"]["Resource"]), arn


def test_ci_deploy_rights_cover_the_deploy_seeds_stack_and_endpoint_names() -> None:
    statements = {s["Sid"]: s for s in evaluator().properties("CiPolicy")["PolicyDocument"]["Statement"]}
    for stage in contract.STAGES:
        # seedcode/model-deploy names its stacks sagemaker-<name>-<id>-deploy-<stage>.
        stack_name = f"sagemaker-abalone-p-abc123def456-deploy-{stage}"
        stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack_name}/uuid"
        assert fnmatch.fnmatchcase(stack, statements["DeployStacks"]["Resource"])
        endpoint = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{contract.endpoint_name('abalone', stage)}"
        assert fnmatch.fnmatchcase(endpoint, statements["Endpoints"]["Resource"])
    other = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/sagemaker-other-p-1-deploy-prod/uuid"
    assert not fnmatch.fnmatchcase(other, statements["DeployStacks"]["Resource"])
    staging = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/abalone-staging"
    assert statements["TestStagingEndpoint"]["Resource"] == staging


def test_ci_may_tag_this_groups_versions_but_never_approve_them() -> None:
    statements = {s["Sid"]: s for s in evaluator().properties("CiPolicy")["PolicyDocument"]["Statement"]}
    tags = statements["ModelRegistryDeploymentTags"]
    assert sorted(as_list(tags["Action"])) == [
        "sagemaker:AddTags", "sagemaker:DeleteTags", "sagemaker:ListTags"]
    group = "abalone-p-abc123def456"
    version = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/3"
    assert fnmatch.fnmatchcase(version, tags["Resource"])
    other = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/other-p-1/3"
    assert not fnmatch.fnmatchcase(other, tags["Resource"])
    every_action = {a for s in statements.values() for a in as_list(s["Action"])}
    assert "sagemaker:UpdateModelPackage" not in every_action  # approval is a person's decision


def test_ci_trust_is_oidc_for_exactly_the_two_repositories() -> None:
    trust = json.loads(evaluator().properties("CiRole")["AssumeRolePolicyDocument"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Federated": PROVIDER}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {"gitlab.example.com:aud": contract.OIDC_AUDIENCE},
        "StringLike": {
            "gitlab.example.com:sub": [
                "project_path:ml/team/abalone-model-build:ref_type:branch:ref:*",
                "project_path:ml/team/abalone-model-deploy:ref_type:branch:ref:*",
            ]
        },
    }
    sub = statement["Condition"]["StringLike"]["gitlab.example.com:sub"]
    assert any(
        fnmatch.fnmatchcase("project_path:ml/team/abalone-model-build:ref_type:branch:ref:main", p)
        for p in sub
    )
    for foreign in ("project_path:ml/team/abalone-model-build-fork:ref_type:branch:ref:main",
                    "project_path:evil/abalone-model-build:ref_type:branch:ref:main",
                    "project_path:ml/team/abalone-model-build:ref_type:tag:ref:v1"):  # fmt: skip
        assert not any(fnmatch.fnmatchcase(foreign, p) for p in sub), foreign


def test_ci_trust_condition_keys_follow_an_issuer_with_a_path() -> None:
    ev = evaluator(GitLabOidcProviderArn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/corp.example/gitlab")
    condition = json.loads(ev.properties("CiRole")["AssumeRolePolicyDocument"])["Statement"][0]["Condition"]
    assert set(condition["StringEquals"]) == {"corp.example/gitlab:aud"}
    assert set(condition["StringLike"]) == {"corp.example/gitlab:sub"}


def test_trust_paths_come_from_gitlab_not_from_parameters() -> None:
    """An empty or numeric GitLabGroup still yields exact paths: GitLab reports them."""
    text = RESOURCES["CiRole"]["Properties"]["AssumeRolePolicyDocument"]["Fn::Sub"][1]
    assert text["BuildPath"] == {"Fn::GetAtt": ["SeedRepositories", "ModelBuildPath"]}
    assert text["DeployPath"] == {"Fn::GetAtt": ["SeedRepositories", "ModelDeployPath"]}


def test_lambda_roles_read_only_their_own_inputs() -> None:
    ev = evaluator(CiAuthMode="access-keys", GitLabOidcProviderArn="")
    statements = {
        s["Sid"]: s for s in ev.properties("SeedCheckinRole")["Policies"][0]["PolicyDocument"]["Statement"]
    }
    assert set(statements["ReadSeeds"]["Resource"]) == {
        f"arn:aws:s3:::{RENDERED['BundleBucket']}/{RENDERED['ModelBuildSeedKey']}",
        f"arn:aws:s3:::{RENDERED['BundleBucket']}/{RENDERED['ModelDeploySeedKey']}",
    }
    assert statements["ReadCiAccessKey"]["Resource"] == "<CiAccessKeySecret>"
    assert "ReadCiAccessKey" not in {
        s["Sid"]
        for s in evaluator().properties("SeedCheckinRole")["Policies"][0]["PolicyDocument"]["Statement"]
    }


# --- outputs -----------------------------------------------------------------------------------------


def test_outputs() -> None:
    outputs = TEMPLATE["Outputs"]
    assert {
        "ModelBuildRepositoryUrl", "ModelBuildRepositoryPath", "ModelBuildProjectId",
        "ModelDeployRepositoryUrl", "ModelDeployRepositoryPath", "ModelDeployProjectId",
        "ModelPackageGroupName", "ArtifactsBucketName",
        "SageMakerExecutionRoleArn", "CiRoleArn", "CiAccessKeySecretArn", "TriggerFunctionName",
        "TriggerDeadLetterQueueUrl",
    } <= set(outputs)  # fmt: skip
    assert outputs["CiRoleArn"]["Condition"] == "UseOidc"
    assert outputs["CiAccessKeySecretArn"]["Condition"] == "UseAccessKeys"
    assert all(o.get("Description") for o in outputs.values())
    # Never the secret's value: only its ARN.
    assert "SecretAccessKey" not in json.dumps([o["Value"] for o in outputs.values()])
