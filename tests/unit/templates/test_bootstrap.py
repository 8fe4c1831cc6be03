"""templates/bootstrap.yml and templates/service-catalog.yml, and how they fit project.yml."""

from __future__ import annotations

import fnmatch

import pytest
from mlops_common import contract

from tests.unit.templates.cfn import ACCOUNT, REGION, Evaluator, as_list, load, parameter_values
from tests.unit.templates.test_project import evaluator as project_evaluator

BOOTSTRAP = load("bootstrap.yml")
CATALOG = load("service-catalog.yml")
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/gitlab-mlops-platform/gitlab-mlops-project-boundary"
EXISTING_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com"
GETATT = {
    "BundleBucket.Arn": "arn:aws:s3:::bundle-bucket",
    "LaunchRole.Arn": (
        f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops-platform/gitlab-mlops-service-catalog-launch"
    ),
    "S3TemplateRole.Arn": (
        f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops-platform/gitlab-mlops-s3-template-launch"
    ),
    "ProjectPermissionsBoundary": BOUNDARY_ARN,
}


REQUIRED = {
    "GitLabTokenSecretArn": (
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:gitlab-mlops-platform/gitlab-token-AbCdEf"
    ),
    "AdminPrincipalArns": f"arn:aws:iam::{ACCOUNT}:role/PlatformAdmin",
}


def bootstrap(**given: str) -> Evaluator:
    return Evaluator(BOOTSTRAP, parameter_values(BOOTSTRAP, **{**REQUIRED, **given}), GETATT)


def statements(ev: Evaluator, logical_id: str) -> dict[str, dict[str, object]]:
    return {s["Sid"]: s for s in ev.properties(logical_id)["PolicyDocument"]["Statement"]}


def allows(statement: dict[str, object], action: str, resource: str) -> bool:
    return action in as_list(statement["Action"]) and any(
        fnmatch.fnmatchcase(resource, pattern) for pattern in as_list(statement["Resource"])
    )


@pytest.mark.parametrize(
    ("choice", "existing", "expected"),
    [("create", "", "<GitLabOidcProvider>"),
     ("existing", EXISTING_PROVIDER, EXISTING_PROVIDER),
     ("none", "", "")],
)  # fmt: skip
def test_oidc_provider_is_created_once_or_reused(choice: str, existing: str, expected: str) -> None:
    ev = bootstrap(CreateOidcProvider=choice, ExistingOidcProviderArn=existing)
    assert ev.resource_exists("GitLabOidcProvider") is (choice == "create")
    assert ev.value(BOOTSTRAP["Outputs"]["GitLabOidcProviderArn"]["Value"]) == expected


def test_oidc_provider_trusts_the_audience_seed_ci_requests() -> None:
    props = bootstrap().properties("GitLabOidcProvider")
    assert props == {"Url": "https://gitlab.com", "ClientIdList": [contract.OIDC_AUDIENCE]}


def test_boundary_has_the_name_and_path_project_roles_reference() -> None:
    props = bootstrap().properties("ProjectPermissionsBoundary")
    assert f"arn:aws:iam::{ACCOUNT}:policy{props['Path']}{props['ManagedPolicyName']}" == BOUNDARY_ARN
    assert project_evaluator().properties("CiProdRole")["PermissionsBoundary"] == BOUNDARY_ARN
    assert (
        props["Path"] == contract.PLATFORM_IAM_PATH
        and props["ManagedPolicyName"] == contract.BOUNDARY_POLICY_NAME
    )


def test_boundary_names_every_action_and_grants_no_iam_writes() -> None:
    for statement in bootstrap().properties("ProjectPermissionsBoundary")["PolicyDocument"]["Statement"]:
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{statement['Sid']}: {action}"
            if action.startswith("iam:"):
                assert action in ("iam:PassRole", "iam:CreateServiceLinkedRole"), action


def test_boundary_scopes_project_resources_by_the_principals_project_tag() -> None:
    variable = "${aws:PrincipalTag/" + contract.PROJECT_TAG + "}"
    scoped = statements(bootstrap(), "ProjectPermissionsBoundary")
    for sid in ("OwnArtifactObjects", "OwnModelRegistry", "OwnEndpoints", "OwnDeployStacks", "OwnSecrets",
                "PassOwnExecutionRole", "OwnDeadLetterQueue"):  # fmt: skip
        assert all(variable in r for r in as_list(scoped[sid]["Resource"])), sid


def test_the_launch_roles_are_outside_the_project_path_and_trust_only_their_service() -> None:
    on = bootstrap(EnableS3ProjectTemplates="true")
    for logical_id, service in (("LaunchRole", "servicecatalog.amazonaws.com"),
                                ("S3TemplateRole", "cloudformation.amazonaws.com")):  # fmt: skip
        props = on.properties(logical_id)
        assert props["Path"] == contract.PLATFORM_IAM_PATH
        (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": service}


def test_s3_templates_add_cors_a_template_role_and_a_policy_for_studio_roles() -> None:
    off = bootstrap()
    assert "CorsConfiguration" not in off.properties("BundleBucket")
    assert not off.resource_exists("StudioS3TemplatesPolicy") and not off.resource_exists("S3TemplateRole")
    on = bootstrap(EnableS3ProjectTemplates="true")
    (rule,) = on.properties("BundleBucket")["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedOrigins"] == ["https://*.sagemaker.aws"] and "GET" in rule["AllowedMethods"]
    passing = statements(on, "StudioS3TemplatesPolicy")["PassTheTemplateRoleToCloudFormation"]
    assert passing["Resource"] == GETATT["S3TemplateRole.Arn"]


def test_only_the_administrators_write_the_bundle_bucket() -> None:
    admins = [f"arn:aws:iam::{ACCOUNT}:role/PlatformAdmin", f"arn:aws:iam::{ACCOUNT}:user/ops"]
    policy = bootstrap(AdminPrincipalArns=",".join(admins)).properties("BundleBucketPolicy")["PolicyDocument"]
    fence = next(s for s in policy["Statement"] if s["Sid"] == "OnlyAdminsWrite")
    assert fence["Effect"] == "Deny" and fence["Principal"] == "*"
    assert fence["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": admins}}
    assert "s3:Put*" in fence["Action"] and "s3:Delete*" in fence["Action"]


def test_the_bundle_bucket_name_has_no_sagemaker_in_it() -> None:
    assert "sagemaker" not in bootstrap().properties("BundleBucket")["BucketName"].lower()


def test_bundle_bucket_is_private_encrypted_and_retained() -> None:
    assert BOOTSTRAP["Resources"]["BundleBucket"]["DeletionPolicy"] == "Retain"
    props = bootstrap().properties("BundleBucket")
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}


def test_bootstrap_outputs_what_init_and_the_catalog_need() -> None:
    assert {
        "BundleBucketName",
        "GitLabOidcProviderArn",
        "LaunchRoleArn",
        "S3TemplateRoleArn",
        "StudioS3TemplatesPolicyArn",
        "ProjectPermissionsBoundaryArn",
    } <= set(BOOTSTRAP["Outputs"])


def test_catalog_product_is_studio_visible_and_launched_with_the_launch_role() -> None:
    given = {
        "ProductTemplateUrl": "https://bundle.s3.us-east-1.amazonaws.com/bundle/project-abc.yml",
        "ProductVersion": "abc",
        "LaunchRoleArn": GETATT["LaunchRole.Arn"],
        "StudioRoleArn": f"arn:aws:iam::{ACCOUNT}:role/studio",
    }
    ev = Evaluator(CATALOG, parameter_values(CATALOG, **given))
    product = ev.properties("Product")
    assert {"Key": "sagemaker:studio-visibility", "Value": "true"} in product["Tags"]
    (artifact,) = product["ProvisioningArtifactParameters"]
    assert artifact["Info"] == {"LoadTemplateFromURL": given["ProductTemplateUrl"]}
    assert artifact["Name"] == "abc"
    assert ev.properties("LaunchConstraint")["RoleArn"] == given["LaunchRoleArn"]
    assert ev.properties("StudioAccess")["PrincipalARN"] == given["StudioRoleArn"]
    assert set(CATALOG["Parameters"]) >= {
        "ProductTemplateUrl",
        "ProductVersion",
        "LaunchRoleArn",
        "StudioRoleArn",
    }


def test_bootstrap_names_the_bundle_bucket_and_the_published_template_as_the_contract_does() -> None:
    ev = bootstrap()
    assert ev.properties("BundleBucket")["BucketName"] == contract.bundle_bucket_name(ACCOUNT, REGION)
    assert BOOTSTRAP["Parameters"]["PublishedTemplateKey"]["Default"] == contract.PUBLISHED_TEMPLATE_KEY
    assert contract.PUBLISHED_TEMPLATE_KEY.startswith(contract.PROJECT_TEMPLATES_PREFIX + "/")


@pytest.mark.parametrize("template", [BOOTSTRAP, load("project.yml")])
def test_the_token_secret_parameter_accepts_only_secrets_under_the_contracts_platform_prefix(
    template: dict[str, object],
) -> None:
    parameters = template["Parameters"]
    assert isinstance(parameters, dict)
    pattern = parameters["GitLabTokenSecretArn"]["AllowedPattern"]
    assert f":secret:{contract.PLATFORM_SECRET_PREFIX}[" in pattern
    assert contract.TOKEN_SECRET_NAME.startswith(contract.PLATFORM_SECRET_PREFIX)
