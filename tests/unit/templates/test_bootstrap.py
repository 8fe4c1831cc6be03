"""templates/bootstrap.yml and templates/service-catalog.yml, and how they fit project.yml."""

from __future__ import annotations

import fnmatch

import pytest
from mlops_common import contract

from tests.unit.templates.cfn import ACCOUNT, REGION, Evaluator, as_list, load, parameter_values
from tests.unit.templates.test_project import evaluator as project_evaluator

BOOTSTRAP = load("bootstrap.yml")
CATALOG = load("service-catalog.yml")
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/sagemaker-gitlab/sagemaker-gitlab-project-boundary"
EXISTING_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com"
GETATT = {
    "BundleBucket.Arn": "arn:aws:s3:::bundle-bucket",
    "LaunchRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/sagemaker-gitlab-bootstrap/launch",
    "ProjectPermissionsBoundary": BOUNDARY_ARN,
}


def bootstrap(**given: str) -> Evaluator:
    return Evaluator(BOOTSTRAP, parameter_values(BOOTSTRAP, **given), GETATT)


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
    ci = project_evaluator().properties("CiRole")
    assert ci["PermissionsBoundary"] == BOUNDARY_ARN


def test_boundary_grants_no_iam_writes_beyond_passing_project_roles_to_sagemaker() -> None:
    for statement in bootstrap().properties("ProjectPermissionsBoundary")["PolicyDocument"]["Statement"]:
        for action in as_list(statement["Action"]):
            if action.startswith("iam:"):
                assert action in ("iam:PassRole", "iam:CreateServiceLinkedRole"), action
    passing = statements(bootstrap(), "ProjectPermissionsBoundary")["PassOnlyProjectRoles"]
    assert passing["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/sagemaker-gitlab/*"
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_launch_role_creates_principals_only_with_the_boundary_and_under_the_path() -> None:
    grants = statements(bootstrap(), "ProjectProvisioningPolicy")
    bounded = grants["ProjectRolesWithBoundary"]
    assert bounded["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": BOUNDARY_ARN}}
    for action in ("iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:CreateUser"):
        assert action in bounded["Action"]
    for sid, statement in grants.items():
        if sid == "ProjectRolesWithBoundary":
            continue
        for action in as_list(statement["Action"]):
            assert action not in (
                "iam:CreateRole", "iam:CreateUser", "iam:PutRolePolicy", "iam:AttachRolePolicy",
                "iam:PutUserPolicy", "iam:AttachUserPolicy", "iam:DeleteRolePermissionsBoundary",
                "iam:DeleteUserPermissionsBoundary", "iam:PutRolePermissionsBoundary",
            ), f"{sid} grants {action} without the boundary condition"  # fmt: skip
    assert grants["PassProjectRolesToLambda"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}
    }


@pytest.mark.parametrize("mode", ["oidc", "access-keys"])
def test_launch_role_can_create_what_project_yml_names(mode: str) -> None:
    """The project's fixed names fall inside the launch role's resource patterns."""
    grants = statements(bootstrap(), "ProjectProvisioningPolicy")
    project = project_evaluator(CiAuthMode=mode, **({"GitLabOidcProviderArn": ""} if mode != "oidc" else {}))
    bucket = project.properties("ArtifactsBucket")["BucketName"]
    assert allows(grants["ArtifactsBuckets"], "s3:CreateBucket", f"arn:aws:s3:::{bucket}")
    for log_group in ("SeedCheckinLogGroup", "TriggerLogGroup"):
        name = project.properties(log_group)["LogGroupName"]
        arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"
        assert allows(grants["ProjectLogGroups"], "logs:CreateLogGroup", arn)
    if mode == "oidc":
        role = project.properties("CiRole")
        arn = f"arn:aws:iam::{ACCOUNT}:role{role['Path']}{role['RoleName']}"
        assert allows(grants["ProjectRolesWithBoundary"], "iam:CreateRole", arn)
    else:
        name = project.properties("CiAccessKeySecret")["Name"]
        arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        assert allows(grants["CiAccessKeySecrets"], "secretsmanager:CreateSecret", arn)
        assert allows(
            grants["ProjectRolesWithBoundary"],
            "iam:CreateUser",
            f"arn:aws:iam::{ACCOUNT}:user/sagemaker-gitlab/u",
        )
    group = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/abalone-p-abc123def456"
    assert allows(grants["ProjectSageMakerResources"], "sagemaker:CreateModelPackageGroup", group)
    # CloudFormation invokes the custom resource's function with the launch role.
    assert allows(
        grants["ProjectFunctions"], "lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f"
    )


def test_launch_role_is_outside_the_project_path_so_projects_cannot_pass_it() -> None:
    props = bootstrap().properties("LaunchRole")
    assert props["Path"] != "/sagemaker-gitlab/"
    assert not fnmatch.fnmatchcase(
        f"arn:aws:iam::{ACCOUNT}:role{props['Path']}x", "*:role/sagemaker-gitlab/*"
    )
    principals = props["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
    assert set(principals) == {"servicecatalog.amazonaws.com", "cloudformation.amazonaws.com"}


def test_s3_templates_add_cors_for_studio_and_a_policy_for_studio_roles() -> None:
    off = bootstrap()
    assert "CorsConfiguration" not in off.properties("BundleBucket")
    assert not off.resource_exists("StudioS3TemplatesPolicy")
    on = bootstrap(EnableS3ProjectTemplates="true")
    (rule,) = on.properties("BundleBucket")["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedOrigins"] == ["https://*.sagemaker.aws"] and "GET" in rule["AllowedMethods"]
    passing = statements(on, "StudioS3TemplatesPolicy")["PassLaunchRoleToCloudFormation"]
    assert passing["Resource"] == GETATT["LaunchRole.Arn"]


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
