"""Upsert, start and follow a pipeline execution on SageMaker.

Create or update is decided by DescribePipeline (ResourceNotFound: create), never by guessing from a
failed CreatePipeline: a ValidationException there is a definition error and is shown as such.
Following an execution has an overall deadline, and a CI job that is cancelled (SIGTERM, SIGINT)
stops the execution it started instead of leaving it running.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from botocore.exceptions import ClientError

from pipelines.status import TERMINAL, StatusPrinter

NOT_FOUND_CODES = ("ResourceNotFound", "ResourceNotFoundException")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RemoteRunError(RuntimeError):
    """The pipeline could not be created, started or followed; the message says what SageMaker answered."""


class Interrupted(Exception):
    """The process received a stop signal (the CI job was cancelled)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", error))


def pipeline_exists(sagemaker: Any, name: str) -> bool:
    """DescribePipeline succeeds: True; ResourceNotFound: False; anything else propagates."""
    try:
        sagemaker.describe_pipeline(PipelineName=name)
    except ClientError as error:
        if _code(error) in NOT_FOUND_CODES:
            return False
        raise
    return True


def upsert_pipeline(
    sagemaker: Any, name: str, definition: str, role_arn: str, tags: list[dict[str, str]], description: str
) -> str:
    """Create the pipeline or update its definition; return its ARN."""
    try:
        if not pipeline_exists(sagemaker, name):
            response = sagemaker.create_pipeline(
                PipelineName=name,
                PipelineDefinition=definition,
                PipelineDescription=description,
                RoleArn=role_arn,
                Tags=tags,
            )
            return str(response["PipelineArn"])
        response = sagemaker.update_pipeline(
            PipelineName=name, PipelineDefinition=definition, PipelineDescription=description, RoleArn=role_arn
        )
        arn = str(response["PipelineArn"])
        if tags:
            sagemaker.add_tags(ResourceArn=arn, Tags=tags)
        return arn
    except ClientError as error:
        raise RemoteRunError(f"SageMaker refused pipeline {name}: {_code(error)}: {_message(error)}") from None


def start_execution(sagemaker: Any, name: str, parameters: Mapping[str, Any]) -> str:
    try:
        response = sagemaker.start_pipeline_execution(
            PipelineName=name,
            PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in sorted(parameters.items())],
        )
    except ClientError as error:
        raise RemoteRunError(f"cannot start pipeline {name}: {_code(error)}: {_message(error)}") from None
    return str(response["PipelineExecutionArn"])


def stop_execution(sagemaker: Any, execution_arn: str) -> str:
    """Ask SageMaker to stop the execution; a short note of what it answered (never raises)."""
    try:
        sagemaker.stop_pipeline_execution(PipelineExecutionArn=execution_arn)
    except ClientError as error:
        return f"stopping it failed: {_code(error)}: {_message(error)}"
    return "stop requested"


def step_statuses(sagemaker: Any, execution_arn: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for page in sagemaker.get_paginator("list_pipeline_execution_steps").paginate(
        PipelineExecutionArn=execution_arn, SortOrder="Ascending"
    ):
        steps.extend(page.get("PipelineExecutionSteps", []))
    return steps


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While inside, SIGTERM and SIGINT raise Interrupted (GitLab sends SIGTERM when a job is cancelled)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous: dict[int, Any] = {}
    with suppress(ValueError):  # not the main thread: signals cannot be trapped there
        previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def follow_execution(
    sagemaker: Any,
    execution_arn: str,
    report: StatusPrinter,
    poll_seconds: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    timeout_seconds: float = 4 * 3600,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, str]:
    """Print each step's status as it changes until the execution ends; return (status, reason).

    After timeout_seconds, or when a stop signal arrives, the execution is stopped and the status
    is "TimedOut" or "Interrupted".
    """
    seen: dict[str, str] = {}
    deadline = clock() + timeout_seconds
    try:
        with stop_signals_raise():
            while True:
                execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
                for step in step_statuses(sagemaker, execution_arn):
                    name, status = step["StepName"], step.get("StepStatus", "")
                    if seen.get(name) != status:
                        seen[name] = status
                        report(name, status, step.get("FailureReason", "") if status == "Failed" else "")
                status = execution.get("PipelineExecutionStatus", "")
                if status in TERMINAL:
                    return status, _outcome(sagemaker, execution_arn, execution, status)
                if clock() >= deadline:
                    note = stop_execution(sagemaker, execution_arn)
                    return "TimedOut", f"the execution did not finish within {timeout_seconds:.0f} s; {note}"
                sleep(poll_seconds)
    except Interrupted as signalled:
        note = stop_execution(sagemaker, execution_arn)
        return "Interrupted", f"received {signalled} (the CI job was cancelled); {note}"


def _outcome(sagemaker: Any, execution_arn: str, execution: Mapping[str, Any], status: str) -> str:
    reason = str(execution.get("FailureReason", ""))
    if status != "Succeeded" and not reason:
        failed = [s for s in step_statuses(sagemaker, execution_arn) if s.get("FailureReason")]
        reason = "; ".join(f"step {s['StepName']}: {s['FailureReason']}" for s in failed)
    return reason or ("" if status == "Succeeded" else f"the execution was {status.lower()}")
