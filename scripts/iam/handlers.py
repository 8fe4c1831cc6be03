"""What CloudFormation asks of the principal that creates, updates or deletes a stack's resources.

For each resource of an offline-deployed stack (scripts/iam/bundle.py) and each permission its resource
handler lists (scripts/iam/catalog.py: AWS's provider schemas), this builds the authorization request:
the ARNs the action is authorized against (its resource types from the Service Authorization Reference,
filled from the resource's own properties), or "*" for actions without a resource type.

Two tables keep this honest:
- `NOT_IAM_ACTIONS`: names some schemas list that are API operations, not IAM actions, with the IAM
  action AWS authorizes them with (Amazon S3 API Reference, each operation's "Permissions" section).
- `FEATURES_NOT_USED`: permissions a handler needs only for a property the bundle never sets (a KMS
  key, a replication role, a login profile...). Each entry carries a predicate on the resource's
  properties; the test fails when a template starts using the feature, so the permission is granted
  then, not before.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import catalog
from .bundle import OfflineStack
from .engine import Request

NOT_IAM_ACTIONS: Mapping[str, str] = {
    "s3:DeleteBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "s3:DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:DeleteBucketCors": "s3:PutBucketCORS",
    "s3:DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "s3:DeleteBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "s3:DeleteBucketReplication": "s3:PutReplicationConfiguration",
    "s3:PutBucketReplication": "s3:PutReplicationConfiguration",
    "s3:PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
}
# A schema artifact, not an API call of the caller: the log-delivery service writes to S3 itself.
SCHEMA_ARTIFACTS = frozenset({"s3:REST.PUT.OBJECT"})

Properties = Mapping[str, Any]


@dataclass(frozen=True)
class Unused:
    """A handler permission the bundle does not need, and how to tell that it still does not."""

    resource_type: str
    actions: tuple[str, ...]  # fnmatch patterns
    not_used: Callable[[Properties], bool]
    reason: str


def _lacks(*names: str) -> Callable[[Properties], bool]:
    return lambda props: not any(props.get(n) for n in names)


def _targets_without_roles(props: Properties) -> bool:
    return not props.get("RoleArn") and not any(t.get("RoleArn") for t in props.get("Targets", []))


FEATURES_NOT_USED: tuple[Unused, ...] = (
    Unused(
        "AWS::Lambda::Function",
        ("kms:*",),
        _lacks("KmsKeyArn"),
        "no KmsKeyArn: Lambda encrypts the environment with its AWS-managed key",
    ),
    Unused("AWS::Lambda::Function", ("elasticfilesystem:*",), _lacks("FileSystemConfigs"), "no EFS mounts"),
    Unused("AWS::Lambda::Function", ("lambda:GetLayerVersion",), _lacks("Layers"), "no layers"),
    Unused(
        "AWS::Lambda::Function",
        (
            "lambda:GetCodeSigningConfig",
            "lambda:PutFunctionCodeSigningConfig",
            "lambda:DeleteFunctionCodeSigningConfig",
        ),
        _lacks("CodeSigningConfigArn"),
        "no code signing config",
    ),
    Unused(
        "AWS::S3::Bucket",
        ("iam:PassRole", "s3:PutReplicationConfiguration"),
        _lacks("ReplicationConfiguration"),
        "no replication (the only role an S3 bucket passes)",
    ),
    Unused(
        "AWS::Logs::LogGroup",
        ("logs:AssociateKmsKey", "logs:DisassociateKmsKey"),
        _lacks("KmsKeyId"),
        "no KMS key on the log groups",
    ),
    Unused(
        "AWS::Logs::LogGroup",
        (
            "logs:CreateLogDelivery",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "firehose:TagDeliveryStream",
        ),
        _lacks("DataProtectionPolicy", "ResourcePolicyDocument"),
        "no data protection audit destinations or resource policy",
    ),
    Unused(
        "AWS::IAM::Role",
        ("iam:DeleteRolePermissionsBoundary",),
        lambda p: bool(p.get("PermissionsBoundary")),
        "every role keeps its boundary (and the launch roles may never remove one)",
    ),
    Unused(
        "AWS::IAM::User",
        ("iam:DeleteUserPermissionsBoundary",),
        lambda p: bool(p.get("PermissionsBoundary")),
        "every user keeps its boundary (and the launch roles may never remove one)",
    ),
    Unused(
        "AWS::IAM::Role",
        ("iam:AttachRolePolicy",),
        _lacks("ManagedPolicyArns"),
        "no ManagedPolicyArns on the role: its managed policies attach themselves (AWS::IAM::ManagedPolicy "
        "Roles)",
    ),
    Unused(
        "AWS::IAM::User",
        ("iam:AttachUserPolicy",),
        _lacks("ManagedPolicyArns"),
        "no ManagedPolicyArns on the user: its managed policies attach themselves (AWS::IAM::ManagedPolicy "
        "Users)",
    ),
    Unused(
        "AWS::IAM::User",
        ("iam:CreateLoginProfile", "iam:UpdateLoginProfile"),
        _lacks("LoginProfile"),
        "CI users never get a console password",
    ),
    Unused(
        "AWS::IAM::User", ("iam:AddUserToGroup", "iam:RemoveUserFromGroup"), _lacks("Groups"), "no groups"
    ),
    Unused(
        "AWS::IAM::ManagedPolicy",
        ("iam:AttachGroupPolicy", "iam:DetachGroupPolicy"),
        _lacks("Groups"),
        "no groups",
    ),
    Unused(
        "AWS::IAM::ManagedPolicy",
        ("iam:AttachUserPolicy", "iam:DetachUserPolicy"),
        _lacks("Users"),
        "attached to roles only (OIDC mode)",
    ),
    Unused(
        "AWS::IAM::ManagedPolicy",
        ("iam:AttachRolePolicy", "iam:DetachRolePolicy"),
        _lacks("Roles"),
        "attached to users only (access-keys mode)",
    ),
    Unused(
        "AWS::SageMaker::ModelPackageGroup",
        ("sagemaker:PutModelPackageGroupPolicy",),
        _lacks("ModelPackageGroupPolicy"),
        "no cross-account resource policy on the group",
    ),
    Unused(
        "AWS::SecretsManager::Secret",
        ("secretsmanager:ReplicateSecretToRegions",),
        _lacks("ReplicaRegions"),
        "no replicas in other Regions",
    ),
    Unused("AWS::Events::Rule", ("iam:PassRole",), _targets_without_roles, "no rule or target passes a role"),
    Unused(
        "AWS::SNS::Topic",
        ("iam:PassRole", "iam:GetRole"),
        _lacks("DeliveryStatusLogging"),
        "no delivery status logging role",
    ),
    Unused(
        "AWS::SNS::Topic",
        ("sns:PutDataProtectionPolicy", "sns:GetDataProtectionPolicy"),
        _lacks("DataProtectionPolicy"),
        "no data protection policy",
    ),
    Unused(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        ("lambda:*",),
        lambda p: p.get("ServiceNamespace") == "sagemaker",
        "scales SageMaker endpoints, not Lambda",
    ),
    Unused(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        ("iam:PassRole",),
        _lacks("RoleARN"),
        "uses Application Auto Scaling's service-linked role",
    ),
    Unused(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        ("application-autoscaling:PutScheduledAction", "application-autoscaling:DeleteScheduledAction"),
        _lacks("ScheduledActions"),
        "no scheduled actions",
    ),
)


@dataclass(frozen=True)
class HandlerCall:
    logical_id: str
    resource_type: str
    handler: str  # create | update | delete
    permission: str  # as the schema lists it
    requests: tuple[Request, ...]


@dataclass(frozen=True)
class Skipped:
    logical_id: str
    permission: str
    reason: str


def unused(resource_type: str, permission: str, props: Properties) -> Unused | None:
    for entry in FEATURES_NOT_USED:
        if entry.resource_type == resource_type and any(
            fnmatch.fnmatch(permission, p) for p in entry.actions
        ):
            return entry if entry.not_used(props) else None
    return None


def _arn_of_type(
    stack: OfflineStack, logical_id: str, kind: str, props: Properties, resource: str
) -> list[str]:
    """ARNs of one Service Authorization Reference resource type, for a resource of `kind`."""
    arn, account = stack.arn, stack.account
    physical = stack.physical_id(logical_id)

    def role(value: Any) -> list[str]:
        return [str(value)] if value else []

    own: dict[tuple[str, str], Callable[[], list[str]]] = {
        ("AWS::S3::Bucket", "bucket"): lambda: [f"arn:aws:s3:::{physical}"],
        ("AWS::S3::Bucket", "object"): lambda: [f"arn:aws:s3:::{physical}/*"],
        ("AWS::S3::BucketPolicy", "bucket"): lambda: [f"arn:aws:s3:::{props['Bucket']}"],
        ("AWS::IAM::Role", "role"): lambda: [stack.role_arn(logical_id)],
        ("AWS::IAM::Role", "policy"): lambda: [str(p) for p in props.get("ManagedPolicyArns", [])],
        ("AWS::IAM::User", "user"): lambda: [stack.user_arn(logical_id)],
        ("AWS::IAM::User", "policy"): lambda: [str(p) for p in props.get("ManagedPolicyArns", [])],
        ("AWS::IAM::AccessKey", "user"): lambda: [
            f"arn:aws:iam::{account}:user/gitlab-mlops/{props['UserName']}"
        ],
        ("AWS::IAM::ManagedPolicy", "policy"): lambda: [physical],
        ("AWS::IAM::ManagedPolicy", "role"): lambda: [_role_arn(stack, r) for r in props.get("Roles", [])],
        ("AWS::IAM::ManagedPolicy", "user"): lambda: [
            f"arn:aws:iam::{account}:user/gitlab-mlops/{u}" for u in props.get("Users", [])
        ],
        ("AWS::SecretsManager::Secret", "Secret"): lambda: [physical],
        ("AWS::Logs::LogGroup", "log-group"): lambda: [arn("logs", f"log-group:{physical}")],
        ("AWS::Lambda::Function", "function"): lambda: [arn("lambda", f"function:{physical}")],
        ("AWS::Lambda::Function", "role"): lambda: role(props.get("Role")),
        ("AWS::Lambda::Function", "key"): lambda: role(props.get("KmsKeyArn")),
        ("AWS::Lambda::Function", "object"): lambda: [
            f"arn:aws:s3:::{props['Code']['S3Bucket']}/{props['Code']['S3Key']}"
        ],
        ("AWS::Lambda::EventInvokeConfig", "function"): lambda: [
            arn("lambda", f"function:{props['FunctionName']}:{props.get('Qualifier', '$LATEST')}")
        ],
        ("AWS::Lambda::Permission", "function"): lambda: [arn("lambda", f"function:{props['FunctionName']}")],
        ("AWS::Events::Rule", "rule-on-default-event-bus"): lambda: [arn("events", f"rule/{physical}")],
        ("AWS::SQS::Queue", "queue"): lambda: [arn("sqs", physical.rsplit("/", 1)[-1])],
        ("AWS::SQS::QueuePolicy", "queue"): lambda: [
            arn("sqs", str(q).rsplit("/", 1)[-1]) for q in props["Queues"]
        ],
        ("AWS::SageMaker::ModelPackageGroup", "model-package-group"): lambda: [physical],
        ("AWS::SageMaker::CodeRepository", "code-repository"): lambda: [
            arn("sagemaker", f"code-repository/{physical}")
        ],
        ("AWS::SageMaker::Model", "model"): lambda: [physical],
        ("AWS::SageMaker::Model", "role"): lambda: role(props.get("ExecutionRoleArn")),
        ("AWS::SageMaker::EndpointConfig", "endpoint-config"): lambda: [physical],
        ("AWS::SageMaker::Endpoint", "endpoint"): lambda: [physical],
        ("AWS::SageMaker::Endpoint", "endpoint-config"): lambda: [
            arn("sagemaker", f"endpoint-config/{props['EndpointConfigName']}")
        ],
        ("AWS::ApplicationAutoScaling::ScalableTarget", "ScalableTarget"): lambda: [
            arn("application-autoscaling", "scalable-target/sandbox0000000000000000000000000000")
        ],
        ("AWS::ApplicationAutoScaling::ScalableTarget", "alarm"): lambda: [
            arn("cloudwatch", f"alarm:TargetTracking-{props['ResourceId']}-AlarmHigh-00000000-0000")
        ],
        ("AWS::ApplicationAutoScaling::ScalableTarget", "role"): lambda: [
            f"arn:aws:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
        ],
        ("AWS::ApplicationAutoScaling::ScalingPolicy", "ScalableTarget"): lambda: [
            arn("application-autoscaling", "scalable-target/sandbox0000000000000000000000000000")
        ],
        ("AWS::CloudWatch::Alarm", "alarm"): lambda: [arn("cloudwatch", f"alarm:{physical}")],
        ("AWS::SNS::Topic", "topic"): lambda: [physical],
        ("AWS::SNS::Subscription", "topic"): lambda: [str(props["TopicArn"])],
        ("AWS::SNS::TopicPolicy", "topic"): lambda: [str(t) for t in props["Topics"]],
    }
    producer = own.get((kind, resource))
    if producer is None:
        return []
    return [a for a in producer() if a]


def _role_arn(stack: OfflineStack, name: Any) -> str:
    for logical_id in stack.of_type("AWS::IAM::Role"):
        if stack.physical_id(logical_id) == str(name):
            return stack.role_arn(logical_id)
    return f"arn:aws:iam::{stack.account}:role/{name}"


def _context(kind: str, action: str, props: Properties, stack: OfflineStack) -> dict[str, Any]:
    context: dict[str, Any] = {"aws:SecureTransport": True}
    boundary = props.get("PermissionsBoundary")
    if boundary and action in (
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:PutRolePermissionsBoundary",
        "iam:CreateUser",
        "iam:PutUserPolicy",
        "iam:AttachUserPolicy",
        "iam:PutUserPermissionsBoundary",
    ):
        context["iam:PermissionsBoundary"] = boundary
    if action == "iam:PassRole":
        service = {
            "AWS::Lambda::Function": "lambda.amazonaws.com",
            "AWS::SageMaker::Model": "sagemaker.amazonaws.com",
        }.get(kind, "")
        if service:
            context["iam:PassedToService"] = service
    if action == "iam:CreateServiceLinkedRole":
        context["iam:AWSServiceName"] = "sagemaker.application-autoscaling.amazonaws.com"
    if action.startswith("application-autoscaling:"):
        context["application-autoscaling:service-namespace"] = props.get("ServiceNamespace", "sagemaker")
    return context


def _attach_context(
    kind: str, props: Properties, stack: OfflineStack, action: str, principal_arn: str
) -> dict[str, Any]:
    """Attaching a managed policy is checked on the role/user, with the policy and the role's boundary."""
    context: dict[str, Any] = {"iam:PolicyARN": stack.physical_id(_policy_logical_id(stack, props))}
    for logical_id in stack.of_type("AWS::IAM::Role") + stack.of_type("AWS::IAM::User"):
        arn = (
            stack.role_arn(logical_id)
            if logical_id in stack.of_type("AWS::IAM::Role")
            else stack.user_arn(logical_id)
        )
        if arn == principal_arn:
            boundary = stack.properties(logical_id).get("PermissionsBoundary")
            if boundary:
                context["iam:PermissionsBoundary"] = boundary
    return context


def _policy_logical_id(stack: OfflineStack, props: Properties) -> str:
    for logical_id in stack.of_type("AWS::IAM::ManagedPolicy"):
        if stack.properties(logical_id).get("ManagedPolicyName") == props.get("ManagedPolicyName"):
            return logical_id
    raise LookupError("managed policy not found")


def handler_calls(
    stack: OfflineStack, handlers: tuple[str, ...] = catalog.HANDLERS, region: str = "us-east-1"
) -> Iterator[HandlerCall | Skipped]:
    """Every handler permission of every resource the stack creates, as authorization requests."""
    for logical_id, resource in stack.resources().items():
        kind = str(resource["Type"])
        if kind.startswith("Custom::"):
            props = stack.properties(logical_id)
            token = str(props["ServiceToken"])
            request = Request("lambda:InvokeFunction", token, {"aws:SecureTransport": True})
            for handler in handlers:
                yield HandlerCall(logical_id, kind, handler, "lambda:InvokeFunction", (request,))
            continue
        retained = resource.get("DeletionPolicy") == "Retain"
        props = stack.properties(logical_id)
        for handler, permissions in catalog.handler_permissions(kind, region).items():
            if handler not in handlers or (handler == "delete" and retained):
                continue
            for permission in permissions:
                if permission in SCHEMA_ARTIFACTS:
                    yield Skipped(logical_id, permission, "not an IAM action (a schema artifact)")
                    continue
                action = NOT_IAM_ACTIONS.get(permission, permission)
                entry = unused(kind, action, props)
                if entry is not None:
                    yield Skipped(logical_id, permission, entry.reason)
                    continue
                yield HandlerCall(
                    logical_id,
                    kind,
                    handler,
                    permission,
                    tuple(_requests(stack, logical_id, kind, props, action)),
                )


def _requests(
    stack: OfflineStack, logical_id: str, kind: str, props: Properties, action: str
) -> list[Request]:
    types = catalog.resource_types(catalog.canonical(action))
    context = _context(kind, action, props, stack)
    arns: list[str] = []
    for resource_type in types:
        arns += [a for a in _arn_of_type(stack, logical_id, kind, props, resource_type.name) if a not in arns]
    if not arns:
        required = [t.name for t in types if t.required]
        if required:
            raise LookupError(
                f"{logical_id} ({kind}): {action} needs a {'/'.join(required)} ARN that handlers.py cannot "
                "build"
            )
        arns = ["*"]
    requests = []
    for arn in arns:
        extra = dict(context)
        if (
            action
            in (
                "iam:AttachRolePolicy",
                "iam:AttachUserPolicy",
                "iam:DetachRolePolicy",
                "iam:DetachUserPolicy",
            )
            and kind == "AWS::IAM::ManagedPolicy"
        ):
            extra.update(_attach_context(kind, props, stack, action, arn))
        requests.append(Request(catalog.canonical(action), arn, extra))
    return requests
