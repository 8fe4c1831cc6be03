"""templates/project.yml: parameters, conditions, the custom resource contract, names, outputs.

What its IAM allows and denies is proven in test_trust_model.py; this module checks the structure.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from mlops_common import contract
from pipeline_trigger.config import TriggerConfig
from seedcode_checkin import deploy_stacks

from scripts.iam.bundle import PlatformSpec, ProjectSpec, build_installation
from tests.unit.templates.cfn import ACCOUNT, REGION, Evaluator, load, parameter_values

TEMPLATE = load("project.yml")
PARAMS = TEMPLATE["Parameters"]
RESOURCES = TEMPLATE["Resources"]

PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com"
TOKEN_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab-mlops-platform/gitlab-token-AbCdEf"
RENDERED = {
    "SageMakerProjectName": "abalone",
    "SageMakerProjectId": "p-abc123def456",
    "GitLabServerUrl": "https://gitlab.example.com",
    "GitLabTokenSecretArn": TOKEN_ARN,
    "GitLabCaBundleS3Uri": "",
    "GitLabOidcProviderArn": PROVIDER,
    "LambdaSubnetIds": "",
    "LambdaSecurityGroupIds": "",
    "DataAccessPrincipalArns": f"arn:aws:iam::{ACCOUNT}:role/Admin",
    "BundleBucket": "gitlab-mlops-bundle-123456789012-us-east-1",
    "CheckinLambdaKey": "bundle/seedcode_checkin-111111111111.zip",
    "TriggerLambdaKey": "bundle/pipeline_trigger-222222222222.zip",
    "ModelBuildSeedKey": "bundle/model-build-333333333333.zip",
    "ModelDeploySeedKey": "bundle/model-deploy-444444444444.zip",
}
SEED_DATA = {
    "SeedRepositories.ModelBuildPath": "ml/team/abalone-model-build",
    "SeedRepositories.ModelDeployPath": "ml/team/abalone-model-deploy",
    "SeedRepositories.ModelBuildProjectId": "101",
    "SeedRepositories.ModelDeployProjectId": "102",
    "SeedRepositories.ModelBuildCloneUrl": "https://gitlab.example.com/ml/team/abalone-model-build.git",
    "SeedRepositories.ModelDeployCloneUrl": "https://gitlab.example.com/ml/team/abalone-model-deploy.git",
    "ArtifactsBucket.Arn": "arn:aws:s3:::gitlab-mlops-p-abc123def456-123456789012-us-east-1",
    "SageMakerExecutionRole.Arn": (
        f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops/gitlab-mlops-p-abc123def456-sagemaker-execution"
    ),
    "TriggerDeadLetterQueue.Arn": (
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:gitlab-mlops-p-abc123def456-pipeline-trigger-dlq"
    ),
    "ModelApprovedRule.Arn": (
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/gitlab-mlops-p-abc123def456-model-approved"
    ),
    "DeployTriggerSecret": (
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab-mlops/p-abc123def456/deploy-trigger-AbCdEf"
    ),
}


def evaluator(**given: Any) -> Evaluator:
    return Evaluator(TEMPLATE, parameter_values(TEMPLATE, **{**RENDERED, **given}), SEED_DATA)


def matches(parameter: str, value: str) -> bool:
    spec = PARAMS[parameter]
    return re.fullmatch(spec["AllowedPattern"], value) is not None and len(value) <= spec.get(
        "MaxLength", 10**6
    )


# --- parameters --------------------------------------------------------------------------------------

PROJECT_PARAMETERS = {
    "SageMakerProjectName", "SageMakerProjectId", "GitLabGroup", "ModelBuildRepositoryName",
    "ModelDeployRepositoryName", "CiAuthMode", "CiAccessKeySerial", "RepositoryDeletionPolicy",
    "DeployStackDeletionPolicy", "OperationsAlarmEmail", "GitLabTokenExpiryWarningDays",
}  # fmt: skip
PLATFORM_PARAMETERS = {
    "GitLabServerUrl", "GitLabTokenSecretArn", "GitLabCaBundleS3Uri", "GitLabOidcProviderArn",
    "LambdaSubnetIds", "LambdaSecurityGroupIds", "DataAccessPrincipalArns", "BundleBucket",
    "CheckinLambdaKey", "TriggerLambdaKey", "ModelBuildSeedKey", "ModelDeploySeedKey",
}  # fmt: skip


def test_parameters_are_exactly_the_projects_choices_and_the_platforms_settings() -> None:
    assert set(PARAMS) == PROJECT_PARAMETERS | PLATFORM_PARAMETERS


def test_every_parameter_has_a_description_and_constrained_strings_explain_themselves() -> None:
    for name, spec in PARAMS.items():
        assert spec.get("Description"), name
        if "AllowedPattern" in spec:
            assert spec.get("ConstraintDescription"), f"{name} has a pattern but no readable error"


def test_parameters_are_grouped_and_labelled_for_studio() -> None:
    interface = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for group in interface["ParameterGroups"] for p in group["Parameters"]]
    assert len(grouped) == len(set(grouped))
    # SageMaker fills in the project name and id itself; everything else is in a group.
    assert set(grouped) == set(PARAMS) - {"SageMakerProjectName", "SageMakerProjectId"}
    assert set(interface["ParameterLabels"]) <= set(PARAMS)


def test_platform_parameters_have_no_default_in_the_source() -> None:
    """Deploying the unrendered source must fail on parameters: only the renderer pins them."""
    for name in PLATFORM_PARAMETERS:
        assert "Default" not in PARAMS[name], name


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


@pytest.mark.parametrize("group", ["", "ml", "ml/team", "ml-platform/team.a/sub_group", "4711"])
def test_gitlab_group_accepts_paths_ids_and_empty(group: str) -> None:
    assert matches("GitLabGroup", group)


@pytest.mark.parametrize("group", ["/ml", "ml/", "ml//team", "ml team", "-ml", "ml/-x", "_ml"])
def test_gitlab_group_rejects_malformed_paths(group: str) -> None:
    assert not matches("GitLabGroup", group)


@pytest.mark.parametrize("parameter", ["ModelBuildRepositoryName", "ModelDeployRepositoryName"])
def test_repository_names(parameter: str) -> None:
    for good in ("", "model-build", "abalone_build.v2"):
        assert matches(parameter, good)
    for bad in ("-build", "ml/build", "build repo", ".hidden", "_build", "a..b", "build.git", "b.atom"):
        assert not matches(parameter, bad)


NAMES = ["", "model-build", "abalone_build.v2", "A1", "-build", "_build", ".hidden", "a..b", "build.git",
         "b.atom", "x.gitx", "ml/build", "build repo", "a" * 100, "a" * 101]  # fmt: skip
GROUPS = ["", "ml", "ml/team", "4711", "_ml", "ml/_x", "-ml", "ml//team", "ml/", "a.b/c_d"]


@pytest.mark.parametrize("name", NAMES)
def test_repository_names_pass_the_template_exactly_when_they_pass_the_check_in(name: str) -> None:
    from mlops_common.errors import ConfigError
    from seedcode_checkin.config import RepoTarget

    from tests.unit.lambdas.helpers import load_event

    props = {**load_event("cfn_create")["ResourceProperties"], "ModelBuildRepositoryName": name}
    try:
        RepoTarget.from_properties(props)
        lambda_accepts = True
    except ConfigError:
        lambda_accepts = False
    # an empty parameter means the default name, which the check-in receives instead
    assert matches("ModelBuildRepositoryName", name) == (lambda_accepts or name == "")


@pytest.mark.parametrize("group", GROUPS)
def test_groups_pass_the_template_exactly_when_they_pass_the_check_in(group: str) -> None:
    from mlops_common.errors import ConfigError
    from seedcode_checkin.config import RepoTarget

    from tests.unit.lambdas.helpers import load_event

    props = {**load_event("cfn_create")["ResourceProperties"], "GitLabGroup": group}
    try:
        RepoTarget.from_properties(props)
        lambda_accepts = True
    except ConfigError:
        lambda_accepts = False
    assert matches("GitLabGroup", group) == lambda_accepts


@pytest.mark.parametrize(
    ("build", "deploy", "expected"),
    [("models", "models", "are both 'models'"),
     ("Models", "models", "are 'Models' and 'models', one GitLab path (case is ignored)")],
)  # fmt: skip
def test_the_same_names_reason_names_each_name_once(build: str, deploy: str, expected: str) -> None:
    from mlops_common.errors import ConfigError
    from seedcode_checkin.config import RepoTarget

    from tests.unit.lambdas.helpers import load_event

    props = {
        **load_event("cfn_create")["ResourceProperties"],
        "ModelBuildRepositoryName": build,
        "ModelDeployRepositoryName": deploy,
    }
    with pytest.raises(ConfigError) as caught:
        RepoTarget.from_properties(props)
    message = str(caught.value)
    assert expected in message
    assert message.count(repr(build)) == 1 and message.count(repr(deploy)) == 1


@pytest.mark.parametrize("project_id", ["p-abc123def456", "p-1", "p-" + "a" * 18])
def test_project_ids_are_what_sagemaker_issues(project_id: str) -> None:
    assert matches("SageMakerProjectId", project_id)


@pytest.mark.parametrize("project_id", ["p-abc-def", "abc123", "p-ABC", "p-" + "a" * 19, "p-"])
def test_project_ids_that_could_prefix_another_are_refused(project_id: str) -> None:
    assert not matches("SageMakerProjectId", project_id)


def test_choices_and_their_defaults() -> None:
    assert PARAMS["CiAuthMode"]["AllowedValues"] == list(contract.AUTH_MODES)
    assert PARAMS["CiAuthMode"]["Default"] == contract.AUTH_MODE_OIDC
    assert PARAMS["RepositoryDeletionPolicy"]["AllowedValues"] == ["retain", "archive", "delete"]
    assert PARAMS["RepositoryDeletionPolicy"]["Default"] == "retain"
    assert PARAMS["DeployStackDeletionPolicy"]["AllowedValues"] == list(deploy_stacks.POLICIES)
    assert PARAMS["DeployStackDeletionPolicy"]["Default"] == deploy_stacks.DELETE
    assert PARAMS["CiAccessKeySerial"]["Type"] == "Number" and PARAMS["CiAccessKeySerial"]["MinValue"] == 1
    for name in ("LambdaSubnetIds", "LambdaSecurityGroupIds", "DataAccessPrincipalArns"):
        assert PARAMS[name]["Type"] == "CommaDelimitedList"


def test_the_longest_names_fit_every_service_limit() -> None:
    name = "a" * PARAMS["SageMakerProjectName"]["MaxLength"]
    project_id = "p-" + "b" * 18
    assert matches("SageMakerProjectName", name) and matches("SageMakerProjectId", project_id)
    ev = evaluator(SageMakerProjectName=name, SageMakerProjectId=project_id, CiAuthMode="oidc")
    assert ev.properties("ModelPackageGroup")["ModelPackageGroupName"] == contract.model_package_group_name(
        name, project_id
    )
    for logical_id in RESOURCES:
        if not ev.resource_exists(logical_id):
            continue
        props = ev.properties(logical_id)
        limits = {"RoleName": 64, "FunctionName": 64, "UserName": 64, "BucketName": 63, "QueueName": 80,
                  "ManagedPolicyName": 128, "CodeRepositoryName": 63, "Name": 64}  # fmt: skip
        for key, limit in limits.items():
            if key in props and isinstance(props[key], str):
                assert len(props[key]) <= limit, (logical_id, key, props[key])
    assert len(contract.endpoint_name(name, project_id, "staging")) <= contract.MAX_ENDPOINT_NAME


def test_project_names_with_uppercase_are_refused_because_sagemaker_arns_are_lowercase() -> None:
    assert matches("SageMakerProjectName", "abalone-v2")
    assert not matches("SageMakerProjectName", "Abalone")
    assert not matches("SageMakerProjectName", "a--")


def test_rules_give_readable_errors_for_inconsistent_choices() -> None:
    rules = TEMPLATE["Rules"]
    assert rules["OidcNeedsProvider"]["RuleCondition"] == {"Fn::Equals": [{"Ref": "CiAuthMode"}, "oidc"]}
    assert "access-keys" in rules["OidcNeedsProvider"]["Assertions"][0]["AssertDescription"]
    assert "LambdaSecurityGroupIds" in rules["VpcNeedsSecurityGroups"]["Assertions"][0]["AssertDescription"]
    assert "init.sh" in rules["DataAccessNeedsAnAdministrator"]["Assertions"][0]["AssertDescription"]


# --- every project resource is named after the project id ---------------------------------------------


def test_every_named_resource_carries_the_project_id() -> None:
    ev = evaluator(CiAuthMode="access-keys")
    names = 0
    for logical_id in RESOURCES:
        if not ev.resource_exists(logical_id):
            continue
        props = ev.properties(logical_id)
        for key in ("RoleName", "UserName", "FunctionName", "QueueName", "ManagedPolicyName", "BucketName",
                    "LogGroupName", "Name", "CodeRepositoryName", "ModelPackageGroupName"):  # fmt: skip
            if key in props and not str(props[key]).startswith("<"):  # "<X>": a reference, not a name
                names += 1
                assert "p-abc123def456" in props[key], (logical_id, key, props[key])
    assert names >= 20


def test_no_bucket_name_contains_sagemaker() -> None:
    """AWS's SageMaker managed policies open every bucket whose name contains "sagemaker" to Studio roles."""
    assert "sagemaker" not in evaluator().properties("ArtifactsBucket")["BucketName"].lower()


# --- conditions: CI principals by duty ------------------------------------------------------------------

DUTY_ROLES = ("CiBuildRole", "CiStagingRole", "CiProdRole")
DUTY_USERS = ("CiBuildUser", "CiStagingUser", "CiProdUser")
DUTY_KEYS = ("CiBuildAccessKey", "CiStagingAccessKey", "CiProdAccessKey")
DUTY_SECRETS = ("CiBuildAccessKeySecret", "CiStagingAccessKeySecret", "CiProdAccessKeySecret")


def test_oidc_mode_creates_three_roles_and_no_users_or_keys() -> None:
    ev = evaluator(CiAuthMode="oidc")
    assert all(ev.resource_exists(r) for r in DUTY_ROLES)
    assert not any(ev.resource_exists(r) for r in DUTY_USERS + DUTY_KEYS + DUTY_SECRETS)


def test_the_role_arns_handed_to_gitlab_are_the_arns_the_roles_get() -> None:
    ev = evaluator(CiAuthMode="oidc")
    props = ev.properties("SeedRepositories")
    for logical_id, key in zip(
        DUTY_ROLES, ("CiBuildRoleArn", "CiStagingRoleArn", "CiProdRoleArn"), strict=True
    ):
        role = ev.properties(logical_id)
        assert props[key] == f"arn:aws:iam::{ACCOUNT}:role{role['Path']}{role['RoleName']}"
        assert props[key.replace("Role", "AccessKeySecret")] == ""


def test_access_key_mode_creates_a_user_key_and_secret_per_duty_and_no_roles() -> None:
    ev = evaluator(CiAuthMode="access-keys", GitLabOidcProviderArn="")
    assert not any(ev.resource_exists(r) for r in DUTY_ROLES)
    assert all(ev.resource_exists(r) for r in DUTY_USERS + DUTY_KEYS + DUTY_SECRETS)
    props = ev.properties("SeedRepositories")
    assert props["CiProdAccessKeySecretArn"] == "<CiProdAccessKeySecret>"
    assert props["CiProdRoleArn"] == ""
    secret = json.loads(
        Evaluator(
            TEMPLATE, ev.refs, {"CiProdAccessKey.SecretAccessKey": "S3CR3T", "CiProdAccessKey": "AKIA1"}
        ).properties("CiProdAccessKeySecret")["SecretString"]
    )
    assert secret == {"AccessKeyId": "AKIA1", "SecretAccessKey": "S3CR3T"}
    assert ev.properties("CiProdPolicy")["Users"] == ["<CiProdUser>"] and "Roles" not in ev.properties(
        "CiProdPolicy"
    )


def test_raising_the_serial_replaces_every_key_and_reruns_the_check_in() -> None:
    """AWS::IAM::AccessKey's Serial: a new value replaces the key; the custom resource gets an Update."""
    before = evaluator(CiAuthMode="access-keys", CiAccessKeySerial="1")
    after = evaluator(CiAuthMode="access-keys", CiAccessKeySerial="2")
    for key in DUTY_KEYS:
        assert before.properties(key)["Serial"] != after.properties(key)["Serial"]
    assert (
        before.properties("SeedRepositories")["CiAccessKeySerial"]
        != after.properties("SeedRepositories")["CiAccessKeySerial"]
    )


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


def test_ca_bundle_object_is_readable_only_when_configured() -> None:
    for role in ("SeedCheckinRole", "TriggerRole"):
        sids = {s["Sid"] for s in evaluator().properties(role)["Policies"][0]["PolicyDocument"]["Statement"]}
        assert "ReadCaBundle" not in sids
        statements = evaluator(GitLabCaBundleS3Uri="s3://certs/gitlab/ca.pem").properties(role)["Policies"][
            0
        ]["PolicyDocument"]["Statement"]
        ca = next(s for s in statements if s["Sid"] == "ReadCaBundle")
        assert ca["Resource"] == "arn:aws:s3:::certs/gitlab/ca.pem"


# --- the seed check-in custom resource -----------------------------------------------------------------

class _ReadKeys(dict[str, object]):
    """Resource properties that remember which keys the check-in's config classes read."""

    def __init__(self, values: dict[str, object]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: object = None) -> object:
        self.read.add(key)
        return super().get(key, default)


def _properties_the_checkin_reads() -> set[str]:
    """The keys the check-in's parsers read (CheckinConfig, RepoTarget, the deploy-stack deletion policy),
    in both CI auth modes (each mode reads its own)."""
    from seedcode_checkin import deploy_stacks
    from seedcode_checkin.config import CheckinConfig, RepoTarget

    from tests.unit.lambdas.helpers import load_event

    read: set[str] = set()
    for mode in contract.AUTH_MODES:
        values = {**load_event("cfn_create")["ResourceProperties"], "CiAuthMode": mode}
        for key in [k for k in values if k.endswith("AccessKeySecretArn") and not values[k]]:
            values[key] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{key}-AbCdEf"
        props = _ReadKeys(values)
        CheckinConfig.from_properties(props)
        RepoTarget.from_properties(props)
        deploy_stacks.policy_from_properties(props)
        read |= props.read
    return read


# Sent so that a change of access keys reaches the check-in as an Update; no code reads its value.
UPDATE_TRIGGERS = {"CiAccessKeySerial"}


def test_the_custom_resource_passes_exactly_what_the_checkins_config_reads() -> None:
    resource = RESOURCES["SeedRepositories"]
    assert resource["Type"] == "Custom::GitLabSeedRepositories"
    passed = set(resource["Properties"]) - {"ServiceToken", "ServiceTimeout"}
    assert passed - UPDATE_TRIGGERS == _properties_the_checkin_reads()


def test_the_fixture_events_carry_the_templates_properties() -> None:
    from tests.unit.lambdas.helpers import load_event

    template = set(RESOURCES["SeedRepositories"]["Properties"]) - {"ServiceTimeout"}
    assert set(load_event("cfn_create")["ResourceProperties"]) == template


def _getatt_keys(node: object, resource: str) -> set[str]:
    if isinstance(node, dict):
        found = set()
        for key, value in node.items():
            if key == "Fn::GetAtt":
                target = value.split(".", 1) if isinstance(value, str) else list(value)
                if target[0] == resource:
                    found.add(target[1])
            else:
                found |= _getatt_keys(value, resource)
        return found
    if isinstance(node, list):
        return set().union(*(_getatt_keys(item, resource) for item in node))
    return set()


def test_every_checkin_attribute_the_template_reads_is_one_the_checkin_answers() -> None:
    from mlops_common.gitlab_api import ProjectInfo
    from seedcode_checkin.core import Outcome

    info = ProjectInfo(1, "g/p", "https://h/g/p.git", "https://h/g/p", "", "main", False, ())
    answered = set(Outcome("id", info, info).data()) | {contract.CHECKIN_DATA_TOKEN_WARNING}
    assert answered == contract.CHECKIN_DATA_KEYS
    read = _getatt_keys(TEMPLATE, "SeedRepositories")
    assert read and read <= contract.CHECKIN_DATA_KEYS
    # Every answer is visible somewhere: as a stack output or used by another resource.
    assert read == contract.CHECKIN_DATA_KEYS


def test_custom_resource_values() -> None:
    props = evaluator(GitLabGroup="ml/team", RepositoryDeletionPolicy="archive").properties(
        "SeedRepositories"
    )
    assert props["ProjectName"] == "abalone" and props["ProjectId"] == "p-abc123def456"
    assert props["ProjectArn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:project/abalone"
    assert props["GitLabUrl"] == RENDERED["GitLabServerUrl"] and props["GitLabGroup"] == "ml/team"
    assert props["GitLabTokenSecretArn"] == TOKEN_ARN
    assert props["DeletionPolicy"] == "archive" and props["DefaultBranch"] == "main"
    assert props["SeedBucket"] == RENDERED["BundleBucket"]
    assert props["ModelPackageGroupName"] == contract.model_package_group_name("abalone", "p-abc123def456")
    assert props["DeployTriggerSecretArn"] == SEED_DATA["DeployTriggerSecret"]
    assert props["ServiceToken"] == "<SeedCheckinFunction.Arn>"


@pytest.mark.parametrize("policy", ["delete", "retain"])
def test_the_deploy_stack_deletion_policy_reaches_the_custom_resource(policy: str) -> None:
    props = evaluator(DeployStackDeletionPolicy=policy).properties("SeedRepositories")
    assert props[deploy_stacks.PROPERTY] == policy
    assert evaluator().properties("SeedRepositories")[deploy_stacks.PROPERTY] == "delete"


def test_deleting_the_deploy_stacks_leaves_time_for_the_repositories_and_the_answer() -> None:
    lambda_timeout = RESOURCES["SeedCheckinFunction"]["Properties"]["Timeout"]
    assert lambda_timeout - deploy_stacks.RESERVE_SECONDS >= 300  # SageMaker endpoints take minutes


def test_a_stuck_custom_resource_fails_in_minutes_and_not_before_the_lambda_can_answer() -> None:
    timeout = RESOURCES["SeedRepositories"]["Properties"]["ServiceTimeout"]
    lambda_timeout = RESOURCES["SeedCheckinFunction"]["Properties"]["Timeout"]
    assert lambda_timeout < timeout <= 600


def test_custom_resource_waits_for_the_group_and_runs_without_lambda_retries() -> None:
    assert "ModelPackageGroup" in RESOURCES["SeedRepositories"]["DependsOn"]
    assert RESOURCES["SeedCheckinInvokeConfig"]["Properties"]["MaximumRetryAttempts"] == 0


def test_the_trigger_secret_starts_as_a_placeholder_the_trigger_recognises() -> None:
    from mlops_common.secrets import parse_stored_trigger

    generate = evaluator().properties("DeployTriggerSecret")["GenerateSecretString"]
    placeholder = json.loads(generate["SecretStringTemplate"]) | {generate["GenerateStringKey"]: "Abc123"}
    assert parse_stored_trigger(json.dumps(placeholder), "label") is None


# --- Lambdas ---------------------------------------------------------------------------------------------


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


def test_trigger_environment_is_the_contracts_and_parses() -> None:
    env = evaluator().properties("TriggerFunction")["Environment"]["Variables"]
    assert tuple(env) == contract.TRIGGER_ENVIRONMENT
    config = TriggerConfig.from_env(env)
    assert config.trigger_secret_id == SEED_DATA["DeployTriggerSecret"]
    assert config.deploy_project_id == 102 and config.gitlab_url == RENDERED["GitLabServerUrl"]
    assert env["DEPLOY_REF"] == evaluator().properties("SeedRepositories")["DefaultBranch"]
    raw = RESOURCES["TriggerFunction"]["Properties"]["Environment"]["Variables"]
    assert raw["DEPLOY_PROJECT_ID"] == {"Fn::GetAtt": ["SeedRepositories", "ModelDeployProjectId"]}
    assert "GITLAB_TOKEN_SECRET_ARN" not in env  # the trigger never holds the platform token


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
    assert ev.properties("TriggerDeadLetterQueue")["SqsManagedSseEnabled"] is True


def test_rule_matches_only_approvals_and_rejections_in_this_projects_group() -> None:
    pattern = evaluator().properties("ModelApprovedRule")["EventPattern"]
    assert pattern == {
        "source": [contract.EVENT_SOURCE],
        "detail-type": [contract.EVENT_DETAIL_TYPE],
        "detail": {
            "ModelPackageGroupName": ["abalone-p-abc123def456"],
            "ModelApprovalStatus": [contract.APPROVED, contract.REJECTED],
        },
    }


def test_the_trigger_reads_the_prod_deploy_stack_the_contract_names() -> None:
    env = evaluator().properties("TriggerFunction")["Environment"]["Variables"]
    expected = contract.deploy_stack_name("abalone", "p-abc123def456", "prod")
    assert env[contract.ENV_PROD_STACK_NAME] == expected


# --- operations: failures are seen -------------------------------------------------------------------


def test_dead_letters_and_trigger_errors_alarm_to_the_operations_topic() -> None:
    ev = evaluator()
    dlq = ev.properties("TriggerDeadLetterAlarm")
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": "<TriggerDeadLetterQueue.QueueName>"}]
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    errors = ev.properties("TriggerErrorsAlarm")
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    for alarm in (dlq, errors):
        assert alarm["AlarmActions"] == ["<OperationsTopic>"]
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmName"].startswith("gitlab-mlops-p-abc123def456-")


def test_the_email_subscription_exists_only_when_an_address_is_given() -> None:
    assert not evaluator().resource_exists("OperationsEmail")
    with_email = evaluator(OperationsAlarmEmail="ops@example.com")
    assert with_email.properties("OperationsEmail") == {
        "TopicArn": "<OperationsTopic>",
        "Protocol": "email",
        "Endpoint": "ops@example.com",
    }
    assert matches("OperationsAlarmEmail", "") and not matches("OperationsAlarmEmail", "not an address")


def test_only_this_projects_alarms_publish_to_its_topic() -> None:
    statement = evaluator().properties("OperationsTopicPolicy")["PolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"].endswith(":alarm:gitlab-mlops-p-abc123def456-*")


def test_the_token_warning_window_reaches_the_check_in() -> None:
    props = evaluator(GitLabTokenExpiryWarningDays="14").properties("SeedRepositories")
    assert str(props["TokenExpiryWarningDays"]) == "14"


# --- storage ---------------------------------------------------------------------------------------------


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
    assert props["BucketName"] == contract.artifacts_bucket_name("p-abc123def456", ACCOUNT, REGION)
    deny = evaluator().properties("ArtifactsBucketPolicy")["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_bucket_policy_admits_the_projects_principals_and_the_named_readers() -> None:
    statements = evaluator().properties("ArtifactsBucketPolicy")["PolicyDocument"]["Statement"]
    fence = next(s for s in statements if s["Sid"] == "OnlyThisProjectAndTheAdministratorsTouchData")
    assert fence["Effect"] == "Deny" and fence["Principal"] == "*"
    assert fence["Condition"]["ArnNotLike"]["aws:PrincipalArn"] == [
        f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops/gitlab-mlops-p-abc123def456-*",
        f"arn:aws:iam::{ACCOUNT}:user/gitlab-mlops/gitlab-mlops-p-abc123def456-*",
        f"arn:aws:iam::{ACCOUNT}:role/Admin",
    ]


def test_model_package_group_is_named_by_contract_and_retained() -> None:
    assert RESOURCES["ModelPackageGroup"]["DeletionPolicy"] == "Retain"
    assert evaluator().properties("ModelPackageGroup")["ModelPackageGroupName"] == "abalone-p-abc123def456"


def test_taggable_resources_carry_the_sagemaker_project_tags() -> None:
    ev = evaluator(CiAuthMode="access-keys")
    untaggable = {"AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::IAM::ManagedPolicy",
                  "AWS::IAM::AccessKey", "AWS::Lambda::Permission", "AWS::Lambda::EventInvokeConfig",
                  "Custom::GitLabSeedRepositories", "AWS::SNS::TopicPolicy",
                  "AWS::SNS::Subscription"}  # fmt: skip
    for logical_id, resource in RESOURCES.items():
        if resource["Type"] in untaggable or not ev.resource_exists(logical_id):
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


def test_trust_paths_come_from_gitlab_not_from_parameters() -> None:
    """An empty or numeric GitLabGroup still yields exact paths: GitLab reports them."""
    for role, key in (
        ("CiBuildRole", "BuildPath"),
        ("CiStagingRole", "DeployPath"),
        ("CiProdRole", "DeployPath"),
    ):
        values = RESOURCES[role]["Properties"]["AssumeRolePolicyDocument"]["Fn::Sub"][1]
        assert values[key] == {
            "Fn::GetAtt": ["SeedRepositories", "ModelBuildPath" if key == "BuildPath" else "ModelDeployPath"]
        }


def test_ci_trust_condition_keys_follow_an_issuer_with_a_path() -> None:
    world = build_installation(
        PlatformSpec(gitlab_url="https://corp.example/gitlab"), [ProjectSpec("abalone", "p-abc123def456")]
    )
    trust = world.trust(f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops/gitlab-mlops-p-abc123def456-ci-prod")
    condition = trust.statements()[0]["Condition"]
    assert set(condition["StringEquals"]) == {"corp.example/gitlab:aud", "corp.example/gitlab:sub"}


# --- outputs ---------------------------------------------------------------------------------------------


def test_outputs() -> None:
    outputs = TEMPLATE["Outputs"]
    assert {
        "ModelBuildRepositoryUrl", "ModelBuildRepositoryPath", "ModelBuildProjectId",
        "ModelDeployRepositoryUrl", "ModelDeployRepositoryPath", "ModelDeployProjectId",
        "ModelPackageGroupName", "ArtifactsBucketName", "SageMakerExecutionRoleArn",
        "CiBuildRoleArn", "CiStagingRoleArn", "CiProdRoleArn", "CiAccessKeySecretArns",
        "DeployTriggerSecretArn", "TriggerFunctionName", "TriggerDeadLetterQueueUrl",
    } <= set(outputs)  # fmt: skip
    assert outputs["CiProdRoleArn"]["Condition"] == "UseOidc"
    assert outputs["CiAccessKeySecretArns"]["Condition"] == "UseAccessKeys"
    assert all(o.get("Description") for o in outputs.values())
    # Never a secret's value: only ARNs.
    assert "SecretAccessKey" not in json.dumps([o["Value"] for o in outputs.values()])
