"""The bundle's IAM as AWS would hold it: principals, trust and resource policies from the templates.

`offline_stack` "deploys" a template without AWS: every resource gets the physical id and attributes
CloudFormation would give it (names come from the resources' own name properties, which the bundle
always sets), so `Fn::Sub`, `Ref` and `Fn::GetAtt` resolve to the ARNs a real stack would have. The
intrinsic functions are evaluated by the sandbox's resolver (scripts/sandbox/cfn_template.py).

`Installation` ties one bootstrap stack and any number of project stacks together and answers: which
principal is this ARN, what may it do (identity policies, boundary, tags), who may assume it, and which
resource policy guards this resource.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_common import contract

from scripts import REPO_ROOT
from scripts.admin.cfn_yaml import load_template
from scripts.sandbox.cfn_template import Resolver

from .engine import Policy, Principal

SECRET_SUFFIX = "AbCdEf"  # noqa: S105 - not a secret. Secrets Manager appends 6 random characters to every secret's ARN


class BundleModelError(LookupError):
    """The template uses something this model cannot resolve offline (say which, and where)."""


@dataclass
class _Ids(Mapping[str, str]):
    """Physical ids computed on demand from each resource's (resolved) name property."""

    stack: OfflineStack

    def __getitem__(self, logical_id: str) -> str:
        return self.stack.physical_id(logical_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self.stack.template.get("Resources", {}))

    def __len__(self) -> int:
        return len(self.stack.template.get("Resources", {}))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.stack.template.get("Resources", {})


@dataclass
class OfflineStack:
    """A template resolved as if CloudFormation had created it in `account`/`region`."""

    template: Mapping[str, Any]
    parameters: Mapping[str, Any]
    account: str
    region: str
    stack_name: str = "stack"
    custom_data: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    resolver: Resolver = field(init=False)

    def __post_init__(self) -> None:
        self.resolver = Resolver(
            template=self.template,
            parameters={
                k: ",".join(v) if isinstance(v, list | tuple) else v for k, v in self.parameters.items()
            },
            pseudo={
                "AWS::AccountId": self.account,
                "AWS::Region": self.region,
                "AWS::Partition": "aws",
                "AWS::StackName": self.stack_name,
                "AWS::StackId": (
                    f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{self.stack_name}/1"
                ),
                "AWS::URLSuffix": "amazonaws.com",
            },
            physical_ids=_Ids(self),
            attribute=self._attribute,
        )

    # --- resources ---------------------------------------------------------------------------------

    def resources(self) -> dict[str, Mapping[str, Any]]:
        """Logical id -> resource, for the resources whose Condition holds."""
        found = {}
        for logical_id, resource in self.template.get("Resources", {}).items():
            condition = resource.get("Condition")
            if condition is None or self.resolver.condition(condition):
                found[logical_id] = resource
        return found

    def properties(self, logical_id: str) -> dict[str, Any]:
        resource = self.template["Resources"][logical_id]
        resolved = self.resolver.resolve(resource.get("Properties", {}))
        if not isinstance(resolved, dict):
            raise BundleModelError(f"{logical_id}: properties did not resolve to an object")
        return resolved

    def of_type(self, resource_type: str) -> list[str]:
        return [lid for lid, r in self.resources().items() if r["Type"] == resource_type]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def physical_id(self, logical_id: str) -> str:
        resource = self.template.get("Resources", {}).get(logical_id)
        if resource is None:
            raise BundleModelError(f"no resource {logical_id}")
        kind = resource["Type"]
        raw = resource.get("Properties", {})

        def prop(name: str) -> str:
            if name not in raw:
                raise BundleModelError(
                    f"{logical_id} ({kind}) has no {name}: name every resource the IAM model reads"
                )
            return str(self.resolver.resolve(raw[name]))

        if kind == "AWS::S3::Bucket":
            return prop("BucketName")
        if kind in ("AWS::IAM::Role",):
            return prop("RoleName")
        if kind == "AWS::IAM::User":
            return prop("UserName")
        if kind == "AWS::IAM::ManagedPolicy":
            path = str(self.resolver.resolve(raw.get("Path", "/")))
            return f"arn:aws:iam::{self.account}:policy{path}{prop('ManagedPolicyName')}"
        if kind == "AWS::IAM::AccessKey":
            return f"AKIA{logical_id.upper()[:12]:X<12}"
        if kind == "AWS::SecretsManager::Secret":
            return self.arn("secretsmanager", f"secret:{prop('Name')}-{SECRET_SUFFIX}")
        if kind == "AWS::Logs::LogGroup":
            return prop("LogGroupName")
        if kind == "AWS::Lambda::Function":
            return prop("FunctionName")
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{prop('QueueName')}"
        if kind == "AWS::Events::Rule":
            return prop("Name")
        if kind == "AWS::IAM::OIDCProvider":
            host = prop("Url").split("://", 1)[-1]
            return f"arn:aws:iam::{self.account}:oidc-provider/{host}"
        if kind == "AWS::SageMaker::ModelPackageGroup":
            return self.arn("sagemaker", f"model-package-group/{prop('ModelPackageGroupName')}")
        if kind == "AWS::SageMaker::CodeRepository":
            return prop("CodeRepositoryName")
        if kind == "AWS::SageMaker::Model":
            return self.arn("sagemaker", f"model/{prop('ModelName')}")
        if kind == "AWS::SageMaker::EndpointConfig":
            return self.arn("sagemaker", f"endpoint-config/{prop('EndpointConfigName')}")
        if kind == "AWS::SageMaker::Endpoint":
            return self.arn("sagemaker", f"endpoint/{prop('EndpointName')}")
        if kind == "AWS::SNS::Topic":
            return self.arn("sns", prop("TopicName"))
        if kind == "AWS::CloudWatch::Alarm":
            return prop("AlarmName")
        if kind.startswith("Custom::") or kind == "AWS::CloudFormation::CustomResource":
            return str(self.custom_data.get(logical_id, {}).get("PhysicalResourceId", f"{logical_id}-id"))
        return f"{logical_id}-physical-id"

    def _attribute(self, logical_id: str, kind: str, physical_id: str, attribute: str) -> Any:
        if kind.startswith("Custom::"):
            data = self.custom_data.get(logical_id, {})
            if attribute not in data:
                raise BundleModelError(f"GetAtt {logical_id}.{attribute}: give it in custom_data")
            return data[attribute]
        props = self.template["Resources"][logical_id].get("Properties", {})
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            path = str(self.resolver.resolve(props.get("Path", "/")))
            return f"arn:aws:iam::{self.account}:role{path}{physical_id}"
        if kind == "AWS::IAM::User" and attribute == "Arn":
            path = str(self.resolver.resolve(props.get("Path", "/")))
            return f"arn:aws:iam::{self.account}:user{path}{physical_id}"
        if kind == "AWS::IAM::AccessKey" and attribute == "SecretAccessKey":
            return f"secret-of-{logical_id}"
        simple = {
            ("AWS::S3::Bucket", "Arn"): f"arn:aws:s3:::{physical_id}",
            ("AWS::Logs::LogGroup", "Arn"): self.arn("logs", f"log-group:{physical_id}:*"),
            ("AWS::Lambda::Function", "Arn"): self.arn("lambda", f"function:{physical_id}"),
            ("AWS::SQS::Queue", "Arn"): self.arn("sqs", physical_id.rsplit("/", 1)[-1]),
            ("AWS::SQS::Queue", "QueueName"): physical_id.rsplit("/", 1)[-1],
            ("AWS::Events::Rule", "Arn"): self.arn("events", f"rule/{physical_id}"),
            ("AWS::SecretsManager::Secret", "Id"): physical_id,
            ("AWS::IAM::ManagedPolicy", "PolicyArn"): physical_id,
            ("AWS::SageMaker::ModelPackageGroup", "ModelPackageGroupArn"): physical_id,
            ("AWS::SageMaker::Model", "ModelName"): physical_id.rsplit("/", 1)[-1],
            ("AWS::SageMaker::EndpointConfig", "EndpointConfigName"): physical_id.rsplit("/", 1)[-1],
            ("AWS::SageMaker::Endpoint", "EndpointName"): physical_id.rsplit("/", 1)[-1],
        }
        if (kind, attribute) in simple:
            return simple[(kind, attribute)]
        raise BundleModelError(f"GetAtt {logical_id}.{attribute} ({kind}) is not modelled offline")

    # --- IAM -----------------------------------------------------------------------------------

    def role_arn(self, logical_id: str) -> str:
        return str(self._attribute(logical_id, "AWS::IAM::Role", self.physical_id(logical_id), "Arn"))

    def user_arn(self, logical_id: str) -> str:
        return str(self._attribute(logical_id, "AWS::IAM::User", self.physical_id(logical_id), "Arn"))


def _document(value: Any, where: str) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise BundleModelError(f"{where}: the policy document is not JSON ({exc})") from exc
    if not isinstance(value, Mapping):
        raise BundleModelError(f"{where}: the policy document is not an object")
    return value


@dataclass(frozen=True)
class RoleModel:
    principal: Principal
    trust: Policy | None  # None for users


@dataclass
class Installation:
    """A bootstrap stack and its project stacks, as one account's IAM."""

    stacks: list[OfflineStack] = field(default_factory=list)

    def add(self, stack: OfflineStack) -> OfflineStack:
        self.stacks.append(stack)
        return stack

    def managed_policies(self) -> dict[str, Policy]:
        """ARN -> policy of every AWS::IAM::ManagedPolicy in the installation."""
        found: dict[str, Policy] = {}
        for stack in self.stacks:
            for logical_id in stack.of_type("AWS::IAM::ManagedPolicy"):
                props = stack.properties(logical_id)
                arn = stack.physical_id(logical_id)
                found[arn] = Policy(logical_id, _document(props["PolicyDocument"], logical_id))
        return found

    def _attached(self, stack: OfflineStack, logical_id: str, key: str) -> list[Policy]:
        """Managed policies whose Roles/Users list names this principal."""
        name = stack.physical_id(logical_id)
        attached = []
        for other in self.stacks:
            for policy_id in other.of_type("AWS::IAM::ManagedPolicy"):
                if name in [str(n) for n in other.properties(policy_id).get(key, [])]:
                    props = other.properties(policy_id)
                    attached.append(Policy(policy_id, _document(props["PolicyDocument"], policy_id)))
        return attached

    def principals(self) -> dict[str, RoleModel]:
        """ARN -> model of every role and user the installation creates."""
        managed = self.managed_policies()
        found: dict[str, RoleModel] = {}
        for stack in self.stacks:
            for kind, key in (("AWS::IAM::Role", "Roles"), ("AWS::IAM::User", "Users")):
                for logical_id in stack.of_type(kind):
                    props = stack.properties(logical_id)
                    policies = [
                        Policy(f"{logical_id}/{p['PolicyName']}", _document(p["PolicyDocument"], logical_id))
                        for p in props.get("Policies", [])
                    ]
                    for arn in props.get("ManagedPolicyArns", []):
                        if str(arn) not in managed:
                            raise BundleModelError(f"{logical_id} attaches {arn}, which no template defines")
                        policies.append(managed[str(arn)])
                    policies += self._attached(stack, logical_id, key)
                    boundary_arn = props.get("PermissionsBoundary")
                    boundary = None
                    if boundary_arn is not None:
                        if str(boundary_arn) not in managed:
                            raise BundleModelError(f"{logical_id}'s boundary {boundary_arn} is not defined")
                        boundary = managed[str(boundary_arn)]
                    tags = {str(t["Key"]): str(t["Value"]) for t in props.get("Tags", [])}
                    arn = stack.role_arn(logical_id) if key == "Roles" else stack.user_arn(logical_id)
                    trust = None
                    if key == "Roles":
                        trust = Policy(
                            f"{logical_id} trust", _document(props["AssumeRolePolicyDocument"], logical_id)
                        )
                    found[arn] = RoleModel(Principal(arn, tuple(policies), boundary, tags), trust)
        return found

    def principal(self, arn: str) -> Principal:
        models = self.principals()
        if arn not in models:
            raise BundleModelError(f"{arn} is not a principal of this installation; known: {sorted(models)}")
        return models[arn].principal

    def trust(self, arn: str) -> Policy:
        model = self.principals().get(arn)
        if model is None or model.trust is None:
            raise BundleModelError(f"{arn} is not a role of this installation")
        return model.trust

    def resource_policies(self) -> dict[str, Policy]:
        """Resource ARN (bucket, queue, function) -> its resource policy."""
        found: dict[str, Policy] = {}
        for stack in self.stacks:
            for logical_id in stack.of_type("AWS::S3::BucketPolicy"):
                props = stack.properties(logical_id)
                found[f"arn:aws:s3:::{props['Bucket']}"] = Policy(
                    logical_id, _document(props["PolicyDocument"], logical_id)
                )
            for logical_id in stack.of_type("AWS::SQS::QueuePolicy"):
                props = stack.properties(logical_id)
                for url in props["Queues"]:
                    arn = stack.arn("sqs", str(url).rsplit("/", 1)[-1])
                    found[arn] = Policy(logical_id, _document(props["PolicyDocument"], logical_id))
            permissions: dict[str, list[dict[str, Any]]] = {}
            for logical_id in stack.of_type("AWS::Lambda::Permission"):
                props = stack.properties(logical_id)
                function = str(props["FunctionName"])
                arn = function if function.startswith("arn:") else stack.arn("lambda", f"function:{function}")
                statement: dict[str, Any] = {
                    "Sid": logical_id,
                    "Effect": "Allow",
                    "Principal": {"Service": props["Principal"]},
                    "Action": props["Action"],
                    "Resource": arn,
                }
                conditions: dict[str, Any] = {}
                if "SourceArn" in props:
                    conditions["ArnLike"] = {"aws:SourceArn": props["SourceArn"]}
                if "SourceAccount" in props:
                    conditions["StringEquals"] = {"aws:SourceAccount": props["SourceAccount"]}
                if conditions:
                    statement["Condition"] = conditions
                permissions.setdefault(arn, []).append(statement)
            for arn, statements in permissions.items():
                found[arn] = Policy(
                    f"function policy of {arn}", {"Version": "2012-10-17", "Statement": statements}
                )
        return found

    def resource_policy_for(self, resource_arn: str) -> Policy | None:
        """The policy guarding `resource_arn` (an S3 object falls under its bucket's policy)."""
        policies = self.resource_policies()
        if resource_arn in policies:
            return policies[resource_arn]
        if resource_arn.startswith("arn:aws:s3:::"):
            bucket = resource_arn[len("arn:aws:s3:::") :].split("/", 1)[0]
            return policies.get(f"arn:aws:s3:::{bucket}")
        if ":function:" in resource_arn:
            base = ":".join(resource_arn.split(":")[:7])
            return policies.get(base)
        return None


def load(path: Path | str) -> dict[str, Any]:
    """A template file as plain data (short-form tags expanded)."""
    return load_template(Path(path).read_text(encoding="utf-8"))


# --- a whole installation from the repository's templates ----------------------------------------------

BOOTSTRAP_TEMPLATE = REPO_ROOT / "templates" / "bootstrap.yml"
PROJECT_TEMPLATE = REPO_ROOT / "templates" / "project.yml"


@dataclass(frozen=True)
class ProjectSpec:
    """One project as SageMaker would create it, and what its custom resource answered."""

    name: str
    project_id: str
    auth_mode: str = "oidc"
    build_path: str = ""
    deploy_path: str = ""
    deploy_project_id: str = "42"

    def custom_data(self) -> dict[str, dict[str, str]]:
        build = self.build_path or f"ml-team/{self.name}-model-build"
        deploy = self.deploy_path or f"ml-team/{self.name}-model-deploy"
        return {
            "SeedRepositories": {
                "ModelBuildPath": build,
                "ModelDeployPath": deploy,
                "ModelBuildProjectId": "41",
                "ModelDeployProjectId": self.deploy_project_id,
                "ModelBuildCloneUrl": f"https://gitlab.example.com/{build}.git",
                "ModelDeployCloneUrl": f"https://gitlab.example.com/{deploy}.git",
            }
        }


@dataclass(frozen=True)
class PlatformSpec:
    """The administrator's bootstrap choices."""

    account: str = "123456789012"
    region: str = "us-east-1"
    gitlab_url: str = "https://gitlab.example.com"
    admin_arns: tuple[str, ...] = ("arn:aws:iam::123456789012:role/PlatformAdmin",)
    data_access_arns: tuple[str, ...] = ()
    s3_templates: bool = True
    vpc: bool = False
    oidc: bool = True
    prefix: str = "bundle"

    @property
    def token_secret_arn(self) -> str:
        return (
            f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:gitlab-mlops-platform/"
            f"gitlab-token-{SECRET_SUFFIX}"
        )

    @property
    def bundle_bucket(self) -> str:
        return contract.bundle_bucket_name(self.account, self.region)

    @property
    def oidc_provider_arn(self) -> str:
        host = self.gitlab_url.split("://", 1)[1]
        return f"arn:aws:iam::{self.account}:oidc-provider/{host}" if self.oidc else ""

    def bootstrap_parameters(self) -> dict[str, Any]:
        return {
            "GitLabServerUrl": self.gitlab_url,
            "GitLabTokenSecretArn": self.token_secret_arn,
            "CreateOidcProvider": "create" if self.oidc else "none",
            "AdminPrincipalArns": list(self.admin_arns),
            "BundlePrefix": self.prefix,
            "EnableS3ProjectTemplates": "true" if self.s3_templates else "false",
        }


def build_installation(
    platform: PlatformSpec, projects: list[ProjectSpec], project_template: str | None = None
) -> Installation:
    """The bootstrap stack and one project stack per spec, from the rendered repository templates."""
    from scripts.admin.render_template import Platform, render_project

    world = Installation()
    world.add(
        OfflineStack(
            load(BOOTSTRAP_TEMPLATE),
            platform.bootstrap_parameters(),
            platform.account,
            platform.region,
            "gitlab-mlops-bootstrap",
        )
    )
    manifest = {
        "lambdas": {
            "seedcode_checkin": {"file": "checkin-0.zip"},
            "pipeline_trigger": {"file": "trigger-0.zip"},
        },
        "seeds": {"model-build": {"file": "build-0.zip"}, "model-deploy": {"file": "deploy-0.zip"}},
    }
    rendered = render_project(
        project_template or PROJECT_TEMPLATE.read_text(encoding="utf-8"),
        manifest,
        platform.bundle_bucket,
        platform.prefix,
        Platform(
            gitlab_url=platform.gitlab_url,
            token_secret_arn=platform.token_secret_arn,
            data_access_principal_arns=platform.admin_arns + platform.data_access_arns,
            oidc_provider_arn=platform.oidc_provider_arn,
        ),
    )
    template = load_template(rendered)
    for spec in projects:
        parameters = {
            "SageMakerProjectName": spec.name,
            "SageMakerProjectId": spec.project_id,
            "CiAuthMode": spec.auth_mode,
        }
        world.add(
            OfflineStack(
                template,
                parameters,
                platform.account,
                platform.region,
                f"SC-{platform.account}-pp-{spec.project_id}",
                spec.custom_data(),
            )
        )
    return world
