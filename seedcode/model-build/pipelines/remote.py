"""Upsert, start and follow a pipeline execution on SageMaker."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pipelines.status import TERMINAL, StatusPrinter


def upsert_pipeline(
    sagemaker: Any, name: str, definition: str, role_arn: str, tags: list[dict[str, str]], description: str
) -> str:
    """Create the pipeline or update its definition; return its ARN."""
    try:
        response = sagemaker.create_pipeline(
            PipelineName=name,
            PipelineDefinition=definition,
            PipelineDescription=description,
            RoleArn=role_arn,
            Tags=tags,
        )
        return str(response["PipelineArn"])
    except sagemaker.exceptions.ResourceInUse:
        pass
    except sagemaker.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("ResourceInUse", "ValidationException"):
            raise
    response = sagemaker.update_pipeline(
        PipelineName=name, PipelineDefinition=definition, PipelineDescription=description, RoleArn=role_arn
    )
    arn = str(response["PipelineArn"])
    if tags:
        sagemaker.add_tags(ResourceArn=arn, Tags=tags)
    return arn


def start_execution(sagemaker: Any, name: str, parameters: Mapping[str, Any]) -> str:
    response = sagemaker.start_pipeline_execution(
        PipelineName=name,
        PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in sorted(parameters.items())],
    )
    return str(response["PipelineExecutionArn"])


def step_statuses(sagemaker: Any, execution_arn: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for page in sagemaker.get_paginator("list_pipeline_execution_steps").paginate(
        PipelineExecutionArn=execution_arn, SortOrder="Ascending"
    ):
        steps.extend(page.get("PipelineExecutionSteps", []))
    return steps


def follow_execution(
    sagemaker: Any,
    execution_arn: str,
    report: StatusPrinter,
    poll_seconds: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str]:
    """Print each step's status as it changes until the execution ends; return (status, reason)."""
    seen: dict[str, str] = {}
    while True:
        execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        for step in step_statuses(sagemaker, execution_arn):
            name, status = step["StepName"], step.get("StepStatus", "")
            if seen.get(name) != status:
                seen[name] = status
                report(name, status, step.get("FailureReason", "") if status == "Failed" else "")
        status = execution.get("PipelineExecutionStatus", "")
        if status in TERMINAL:
            reason = execution.get("FailureReason", "")
            if status != "Succeeded" and not reason:
                failed = [s for s in step_statuses(sagemaker, execution_arn) if s.get("FailureReason")]
                reason = "; ".join(f"step {s['StepName']}: {s['FailureReason']}" for s in failed)
            return status, reason or ("" if status == "Succeeded" else f"the execution was {status.lower()}")
        sleep(poll_seconds)
