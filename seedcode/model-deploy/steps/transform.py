"""Batch transform jobs: what a `batch` stage runs instead of an endpoint (CloudFormation has none for it).

One job reads every object under an S3 prefix as text/csv, split by line, and SageMaker writes one
`<object>.out` per input object (the records' predictions, one per line) under the job's output prefix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from steps.common import StepError
from steps.hosting import Batch

DONE = frozenset({"Completed", "Failed", "Stopped"})


@dataclass(frozen=True)
class TransformResult:
    job_name: str
    status: str
    output_s3_uri: str
    failure_reason: str = ""
    seconds: float = 0.0


def transform_job_name(project_id: str, stage: str, suffix: str) -> str:
    """`gitlab-mlops-<project id>-<stage>-<suffix>`: the CI roles may touch only jobs named so (<= 63)."""
    return f"gitlab-mlops-{project_id}-{stage}-{suffix}"[:63].rstrip("-")


def run_transform(
    sm: Any,
    model_name: str,
    job_name: str,
    input_s3_uri: str,
    batch: Batch,
    tags: Mapping[str, str],
    timeout_seconds: float = 3600.0,
    delay_seconds: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> TransformResult:
    """Start the transform job over `input_s3_uri` and wait for it to finish (polls after 1 s, doubling up to
    `delay_seconds`)."""
    output = f"{batch.output_s3_prefix.rstrip('/')}/{job_name}/"
    began = time.monotonic()
    sm.create_transform_job(
        TransformJobName=job_name,
        ModelName=model_name,
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=batch.max_payload_mb,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_s3_uri}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": output, "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceType": batch.instance_type, "InstanceCount": batch.instance_count},
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )
    log(
        f"Transform job {job_name}: {input_s3_uri} -> {output} "
        f"({batch.instance_count} x {batch.instance_type})"
    )
    delay = min(1.0, delay_seconds)
    while True:
        described = sm.describe_transform_job(TransformJobName=job_name)
        status = str(described["TransformJobStatus"])
        if status in DONE:
            break
        if time.monotonic() - began > timeout_seconds:
            raise StepError(
                f"transform job {job_name} is still {status} after {timeout_seconds:.0f} s; stop it or look "
                "at it in the SageMaker console and re-run this job"
            )
        sleep(delay)
        delay = min(delay * 2, delay_seconds)
    result = TransformResult(
        job_name, status, output, str(described.get("FailureReason", "")), time.monotonic() - began
    )
    log(f"Transform job {job_name}: {status} in {result.seconds:.1f} s {result.failure_reason}".rstrip())
    return result
