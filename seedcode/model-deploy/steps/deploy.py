"""Deploy step: create or update one stage's endpoint stack through a CloudFormation change set.

"No changes" (the stage already serves this package with these settings) is a success. A failed
deployment prints the stack's failure events and exits non-zero. The end prints the endpoint name and
status, and writes build/<stage>-deploy.json for the jobs after it.

Afterwards the model registry says where each version runs: the deployed version gets the tag
`deployed-to:<stage>` (value: the GitLab pipeline that deployed it) and the version the stage served
before loses it. `build/<stage>-deploy.env` is the job's dotenv report: GitLab sets the environment's
URL from ENDPOINT_CONSOLE_URL and keeps the version beside it (DEPLOYED_MODEL_VERSION).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from steps.common import (
    STAGES,
    STAGING_PASSED_FILE,
    TEMPLATE_FILE,
    Project,
    StepError,
    deploy_dotenv_file,
    deploy_result_file,
    deployed_tag,
    environ,
    parameters_file,
    read_json,
    read_text,
    run_cli,
    tags_file,
    write_json,
)
from steps.hosting import Hosting, hosting_file
from steps.promotion import check_promotion, older_allowed, promoted_arn
from steps.transform import run_transform, transform_job_name

# CloudFormation's words for an empty change set (there is no error code for it).
NO_CHANGES_REASONS = ("didn't contain changes", "No updates are to be performed")
# Stacks in these states cannot be updated and hold nothing worth keeping: a first create that failed.
DELETE_BEFORE_CREATE = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"})
SUCCESS = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE"})

Log = Callable[[str], None]


@dataclass(frozen=True)
class Waiting:
    """How often and how long to poll CloudFormation (an endpoint takes 5-15 minutes to create)."""

    delay_seconds: float = 15.0
    timeout_seconds: float = 3600.0
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class DeployResult:
    stack_name: str
    stage: str
    changed: bool
    stack_status: str
    endpoint_name: str
    endpoint_status: str
    model_package_arn: str
    previous_model_package_arn: str = ""
    hosting_mode: str = "realtime"
    model_name: str = ""
    transform_job: str = ""  # batch: the production transform this deploy ran
    transform_output: str = ""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def stack_status(cfn: Any, stack_name: str) -> str | None:
    """The stack's status, or None when it does not exist."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if _error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def _poll(describe: Callable[[], str], busy: Callable[[str], bool], waiting: Waiting, what: str) -> str:
    deadline = time.monotonic() + waiting.timeout_seconds
    while True:
        status = describe()
        if not busy(status):
            return status
        if time.monotonic() > deadline:
            raise StepError(
                f"{what} is still {status} after {waiting.timeout_seconds:.0f} s; look at it in the "
                "CloudFormation console and re-run this job when it has finished"
            )
        waiting.sleep(waiting.delay_seconds)


def newest_event_id(cfn: Any, stack_name: str) -> str | None:
    events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    return str(events[0]["EventId"]) if events else None


def failure_events(cfn: Any, stack_name: str, after_event_id: str | None) -> list[str]:
    """One line per failed resource event of the stack newer than `after_event_id`, oldest first."""
    lines: list[str] = []
    paginator = cfn.get_paginator("describe_stack_events")
    for page in paginator.paginate(StackName=stack_name):
        for event in page["StackEvents"]:  # newest first
            if event["EventId"] == after_event_id:
                return list(reversed(lines))
            status = event.get("ResourceStatus", "")
            if "FAILED" in status or "ROLLBACK" in status:
                lines.append(
                    f"  {event['Timestamp']:%H:%M:%S} {event.get('LogicalResourceId')} "
                    f"({event.get('ResourceType')}): {status}: {event.get('ResourceStatusReason', '')}"
                )
    return list(reversed(lines))


def _delete_failed_stack(cfn: Any, stack_name: str, status: str, waiting: Waiting, log: Log) -> None:
    log(f"Stack {stack_name} is {status} (its first create failed); deleting it before creating it again")
    cfn.delete_stack(StackName=stack_name)

    def describe() -> str:
        return stack_status(cfn, stack_name) or "DELETE_COMPLETE"

    final = _poll(describe, lambda s: s.endswith("_IN_PROGRESS"), waiting, f"deleting stack {stack_name}")
    if final != "DELETE_COMPLETE":
        raise StepError(f"could not delete failed stack {stack_name} ({final}); delete it in the console")


def apply_change_set(
    cfn: Any,
    stack_name: str,
    template_body: str,
    parameters: Sequence[dict[str, str]],
    tags: Sequence[dict[str, str]],
    change_set_name: str,
    waiting: Waiting,
    log: Log = print,
) -> tuple[bool, str]:
    """Create-or-update `stack_name` through a change set; returns (changed, final stack status)."""
    status = stack_status(cfn, stack_name)
    if status in DELETE_BEFORE_CREATE:
        _delete_failed_stack(cfn, stack_name, status, waiting, log)
        status = None
    if status is not None and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise StepError(
            f"stack {stack_name} is busy ({status}); wait for it to finish (or cancel it in the console) "
            "and re-run this job"
        )
    if status is not None and status.endswith("_FAILED"):
        raise StepError(
            f"stack {stack_name} is {status} and cannot be updated; fix it in the CloudFormation console "
            "(continue the rollback or delete the stack) and re-run this job"
        )
    change_set_type = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    log(f"Creating {change_set_type} change set {change_set_name} for stack {stack_name}")
    created = cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=change_set_name,
        ChangeSetType=change_set_type,
        TemplateBody=template_body,
        Parameters=list(parameters),
        Tags=list(tags),
        Description="model-deploy pipeline",
    )
    change_set_id = created["Id"]

    def describe_change_set() -> str:
        return str(cfn.describe_change_set(ChangeSetName=change_set_id)["Status"])

    cs_status = _poll(
        describe_change_set,
        lambda s: s in ("CREATE_PENDING", "CREATE_IN_PROGRESS"),
        waiting,
        f"change set {change_set_name}",
    )
    if cs_status == "FAILED":
        reason = str(cfn.describe_change_set(ChangeSetName=change_set_id).get("StatusReason", ""))
        if change_set_type == "UPDATE" and any(text in reason for text in NO_CHANGES_REASONS):
            cfn.delete_change_set(ChangeSetName=change_set_id)
            log(f"No changes: stack {stack_name} already serves this model package with these settings")
            return False, status or ""
        raise StepError(f"change set {change_set_name} for stack {stack_name} failed: {reason}")

    log(f"Executing change set {change_set_name}")
    last_event = newest_event_id(cfn, stack_name)
    cfn.execute_change_set(ChangeSetName=change_set_id)
    final = _poll(
        lambda: stack_status(cfn, stack_name) or "DELETE_COMPLETE",
        lambda s: s.endswith("_IN_PROGRESS"),
        waiting,
        f"stack {stack_name}",
    )
    if final not in SUCCESS:
        events = failure_events(cfn, stack_name, last_event)
        details = "\n".join(events) if events else "  (no failure events recorded)"
        log(f"Stack {stack_name} ended {final}. Failure events:\n{details}")
        raise StepError(f"deploying stack {stack_name} failed ({final}); the events above say why")
    return True, final


def served_package(cfn: Any, stack_name: str) -> str:
    """The ModelPackageArn the stage's stack deploys now ("" when there is no stack yet)."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if _error_code(exc) == "ValidationError":
            return ""
        raise
    parameters = stacks[0].get("Parameters", []) if stacks else []
    return next((str(p["ParameterValue"]) for p in parameters if p["ParameterKey"] == "ModelPackageArn"), "")


def record_deployment(
    sm: Any, stage: str, package_arn: str, previous_arn: str, deployed_by: str, log: Log
) -> bool:
    """Tag the version the stage now serves and untag the one it served before; False (with a warning in the
    log) when the registry refuses: the endpoint is serving, only the bookkeeping is missing."""
    tag = deployed_tag(stage)
    try:
        if previous_arn and previous_arn != package_arn:
            sm.delete_tags(ResourceArn=previous_arn, TagKeys=[tag])
        sm.add_tags(ResourceArn=package_arn, Tags=[{"Key": tag, "Value": deployed_by[:256] or "unknown"}])
    except (ClientError, BotoCoreError) as exc:
        log(
            f"WARNING: could not record in the model registry that {stage} serves {package_arn} ({exc}); "
            "the CI role needs sagemaker:AddTags and sagemaker:DeleteTags on the project's model packages"
        )
        return False
    untagged = f", {previous_arn} untagged" if previous_arn and previous_arn != package_arn else ""
    log(f"Model registry: {package_arn} tagged {tag}{untagged}")
    return True


def console_url(region: str, endpoint_name: str) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/endpoints/{endpoint_name}"
    )


def write_dotenv(path: Path, values: dict[str, str]) -> None:
    """A dotenv report: KEY=value lines, no quotes, no newlines in values (GitLab's format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v.replace(chr(10), ' ')}\n" for k, v in values.items()), encoding="utf-8")


def endpoint_of_stack(cfn: Any, stack_name: str) -> str:
    """The endpoint name from the stack's EndpointName output (or its Endpoint resource when no outputs)."""
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    for output in stack.get("Outputs") or []:
        if output["OutputKey"] == "EndpointName":
            return str(output["OutputValue"])
    # Outputs are missing only where the emulator (moto) skips them for change sets.
    resources = cfn.describe_stack_resources(StackName=stack_name, LogicalResourceId="Endpoint")
    physical = str(resources["StackResources"][0]["PhysicalResourceId"])
    return physical.rsplit("endpoint/", 1)[-1] if physical.startswith("arn:") else physical


def stack_parameters(cfn: Any, stack_name: str) -> dict[str, str]:
    """The stack's current parameter values ({} when there is no stack yet)."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if _error_code(exc) == "ValidationError":
            return {}
        raise
    return {str(p["ParameterKey"]): str(p["ParameterValue"]) for p in (stacks[0].get("Parameters") or [])}


def scaling_plan(current: dict[str, str], new: dict[str, str]) -> tuple[bool, bool]:
    """(keep the instance count autoscaling reached, pause autoscaling for an instance-type change).

    Application Auto Scaling refuses an endpoint update that changes the instance type of a registered
    variant (SageMaker guide, "Update or delete endpoints that use automatic scaling"): deregister it,
    update the endpoint, register it again."""
    scaled = current.get("EnableAutoScaling") == "true" and new.get("EnableAutoScaling") == "true"
    keep = bool(current) and scaled and current.get("StageName") == new.get("StageName")
    retype = keep and current.get("EndpointInstanceType") != new.get("EndpointInstanceType")
    return keep, retype


def pause_autoscaling(
    cfn: Any, stack_name: str, current: dict[str, str], tags: Any, change_set: str, waiting: Waiting, log: Log
) -> None:
    """Update the stack as it is, autoscaling off: CloudFormation deregisters the scalable target (and its
    policies); the endpoint itself is not touched."""
    log(
        f"Instance type changes from {current.get('EndpointInstanceType')} with autoscaling on: first "
        "deregistering the scalable target (the endpoint keeps serving), updating, then registering it again"
    )
    previous = cfn.get_template(StackName=stack_name)["TemplateBody"]
    body = previous if isinstance(previous, str) else json.dumps(previous)
    paused = [
        {"ParameterKey": k, "ParameterValue": v} for k, v in {**current, "EnableAutoScaling": "false"}.items()
    ]
    apply_change_set(cfn, stack_name, body, paused, tags, change_set, waiting, log)


def read_hosting(build_dir: Path, stage: str) -> Hosting:
    """The stage's hosting as the build parsed it (a build directory from before hosting modes: realtime)."""
    path = build_dir / hosting_file(stage)
    return Hosting.from_json(read_json(path)) if path.exists() else Hosting()


def model_of_stack(cfn: Any, stack_name: str) -> str:
    """The SageMaker model name from the stack's ModelName output (or its Model resource)."""
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    for output in stack.get("Outputs") or []:
        if output["OutputKey"] == "ModelName":
            return str(output["OutputValue"])
    resources = cfn.describe_stack_resources(StackName=stack_name, LogicalResourceId="Model")
    physical = str(resources["StackResources"][0]["PhysicalResourceId"])
    return physical.rsplit("model/", 1)[-1] if physical.startswith("arn:") else physical


def model_console_url(region: str, kind: str, name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{kind}/{name}"


def deploy(
    cfn: Any,
    sm: Any,
    project: Project,
    stage: str,
    template_body: str,
    build_dir: Path,
    change_set_name: str,
    waiting: Waiting | None = None,
    log: Log = print,
    deployed_by: str = "",
    promote_older: bool = False,
) -> DeployResult:
    """Deploy one stage from the build step's files; returns what was deployed and the endpoint's state.

    Production first passes the promotion gate (steps/promotion.py)."""
    waiting = waiting or Waiting()
    parameters = read_json(build_dir / parameters_file(stage))
    tags = read_json(build_dir / tags_file(stage))
    package_arn = (
        promoted_arn(build_dir, parameters)
        if stage == "prod"
        else next((p["ParameterValue"] for p in parameters if p["ParameterKey"] == "ModelPackageArn"), "")
    )
    if stage == "prod":
        passed_path = build_dir / STAGING_PASSED_FILE
        passed = read_json(passed_path) if passed_path.exists() else None
        gate = check_promotion(sm, project.model_package_group, package_arn, passed, promote_older)
        newest = (
            "is the newest approval"
            if gate.newest_approved_arn == package_arn
            else f"is older than the newest approval {gate.newest_approved_arn} (promoted on purpose)"
        )
        log(f"Promotion gate: {package_arn} passed staging in this pipeline, is Approved and {newest}")
    stack_name = project.stack_name(stage)
    previous = served_package(cfn, stack_name)
    current = stack_parameters(cfn, stack_name)
    keep_count, retype = scaling_plan(current, {p["ParameterKey"]: p["ParameterValue"] for p in parameters})
    parameters = [p for p in parameters if p["ParameterKey"] != "RetainInstanceCount"]
    parameters.append(
        {"ParameterKey": "RetainInstanceCount", "ParameterValue": "true" if keep_count else "false"}
    )
    if retype:
        pause_autoscaling(cfn, stack_name, current, tags, f"{change_set_name}-pause", waiting, log)
    changed, final = apply_change_set(
        cfn, stack_name, template_body, parameters, tags, change_set_name, waiting, log
    )
    hosting = read_hosting(build_dir, stage)
    model_name = model_of_stack(cfn, stack_name)
    transform_job = transform_output = ""
    if hosting.has_endpoint:
        endpoint_name = endpoint_of_stack(cfn, stack_name)
        endpoint_status = str(sm.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"])
        url = console_url(project.region, endpoint_name)
    else:
        endpoint_name, endpoint_status = "", "none (batch: the model only)"
        url = model_console_url(project.region, "models", model_name)
    if hosting.batch is not None and stage == "prod":
        suffix = change_set_name.removeprefix("deploy-")
        ran = run_transform(
            sm,
            model_name,
            transform_job_name(project.id, stage, suffix),
            hosting.batch.input_s3_uri,
            hosting.batch,
            project.tags(),
            timeout_seconds=waiting.timeout_seconds,
            delay_seconds=waiting.delay_seconds,
            sleep=waiting.sleep,
            log=log,
        )
        if ran.status != "Completed":
            raise StepError(f"transform job {ran.job_name} ended {ran.status}: {ran.failure_reason}")
        transform_job, transform_output = ran.job_name, ran.output_s3_uri
        url = model_console_url(project.region, "transform-jobs", ran.job_name)
    result = DeployResult(
        stack_name=stack_name,
        stage=stage,
        changed=changed,
        stack_status=final,
        endpoint_name=endpoint_name,
        endpoint_status=endpoint_status,
        model_package_arn=package_arn,
        previous_model_package_arn=previous,
        hosting_mode=hosting.mode,
        model_name=model_name,
        transform_job=transform_job,
        transform_output=transform_output,
    )
    write_json(build_dir / deploy_result_file(stage), asdict(result))
    if hosting.has_endpoint:
        log(
            f"Endpoint {endpoint_name} ({hosting.mode}): {endpoint_status} (stack {stack_name} {final}, "
            f"serving {package_arn})"
        )
        if endpoint_status != "InService":
            raise StepError(
                f"endpoint {endpoint_name} is {endpoint_status}, not InService; see its events in SageMaker"
            )
    else:
        log(f"Model {model_name} (batch, no endpoint): stack {stack_name} {final}, serving {package_arn}")
    record_deployment(sm, stage, package_arn, previous, deployed_by, log)
    write_dotenv(
        build_dir / deploy_dotenv_file(stage),
        {
            "ENDPOINT_NAME": endpoint_name,
            "ENDPOINT_CONSOLE_URL": url,
            "HOSTING_MODE": hosting.mode,
            "DEPLOYED_MODEL_PACKAGE_ARN": package_arn,
            "DEPLOYED_MODEL_VERSION": package_arn.rsplit("/", 1)[-1],
        },
    )
    return result


def change_set_name(env: dict[str, str] | None = None) -> str:
    """Unique, valid change set name: deploy-<utc time>[-p<pipeline id>]."""
    pipeline = (env or {}).get("CI_PIPELINE_ID", "")
    suffix = f"-p{pipeline}" if pipeline.isdigit() else ""
    return f"deploy-{datetime.now(UTC):%Y%m%d%H%M%S}{suffix}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument(
        "--build-dir", type=Path, default=Path("build"), help="the build job's output directory"
    )
    parser.add_argument("--template", type=Path, default=Path(TEMPLATE_FILE))
    parser.add_argument("--timeout-minutes", type=float, default=60.0, help="give up waiting after this long")
    args = parser.parse_args(argv)

    def body() -> int:
        env = dict(environ())
        project = Project.from_env(env)
        cfn = boto3.client("cloudformation", region_name=project.region)
        sm = boto3.client("sagemaker", region_name=project.region)
        deploy(
            cfn,
            sm,
            project,
            args.stage,
            read_text(args.template),
            args.build_dir,
            change_set_name(env),
            Waiting(timeout_seconds=args.timeout_minutes * 60),
            deployed_by=env.get("CI_PIPELINE_URL", "") or env.get("CI_JOB_URL", ""),
            promote_older=older_allowed(env),
        )
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
