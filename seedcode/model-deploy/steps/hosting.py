"""How a stage hosts the model: the `Hosting` section of <stage>-config.json, parsed once and checked.

    "Hosting": {"Mode": "realtime"}                       instances (Parameters: type, count, autoscaling)
    "Hosting": {"Mode": "serverless", "MemorySizeInMB": 2048, "MaxConcurrency": 5}
    "Hosting": {"Mode": "async", "S3OutputPath": "s3://...", "S3FailurePath": "s3://...",
                "SuccessTopicArn": "arn:aws:sns:...", "ErrorTopicArn": "arn:aws:sns:...",
                "MaxConcurrentInvocationsPerInstance": 4, "ScaleToZero": true}
    "Hosting": {"Mode": "batch", "InputS3Uri": "s3://bucket/prefix/", "InstanceType": "ml.m5.large",
                "InstanceCount": 1, "MaxPayloadInMB": 6}

Without a Hosting section a stage is `realtime`. The rules each mode is checked against are SageMaker's
(CreateEndpointConfig and CreateTransformJob API reference, Serverless Inference feature exclusions):
serverless variants take memory (1024-6144 MB in 1 GB steps) and a max concurrency (1-200) instead of an
instance type and count, and support neither data capture nor autoscaling of instances; async output and
failure paths are S3 URIs and the notification topics SNS topic ARNs; a batch transform reads an S3 prefix
(split by line) and writes under the project's artifacts bucket. CloudFormation has no batch-transform
resource: a batch stage's stack holds the model only and the CI job runs the transform job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from steps.common import StepError, check_stage

REALTIME, SERVERLESS, ASYNC, BATCH = "realtime", "serverless", "async", "batch"
MODES: Final = (REALTIME, SERVERLESS, ASYNC, BATCH)
SERVERLESS_MEMORY_MB: Final = (1024, 2048, 3072, 4096, 5120, 6144)
# Template parameters that size instances: a serverless stage must not set them.
INSTANCE_PARAMETERS: Final = (
    "EndpointInstanceType",
    "EndpointInstanceCount",
    "AutoScalingMinCapacity",
    "AutoScalingMaxCapacity",
    "TargetInvocationsPerInstance",
)
# Template parameters the build fills in from the Hosting section; a config's Parameters must not set them.
HOSTING_PARAMETERS: Final = (
    "HostingMode",
    "ServerlessMemorySizeInMB",
    "ServerlessMaxConcurrency",
    "AsyncS3OutputPath",
    "AsyncS3FailurePath",
    "AsyncSuccessTopicArn",
    "AsyncErrorTopicArn",
    "AsyncMaxConcurrentInvocationsPerInstance",
    "AsyncScaleToZero",
    "RolloutStrategy",
    "RolloutStepPercent",
    "RolloutWaitSeconds",
    "RolloutTerminationWaitSeconds",
    "RolloutMaxExecutionSeconds",
    "RollbackModelLatencyMicroseconds",
    "Rollback5xxErrors",
    "RollbackModelErrors",
)
ROLLOUT_STRATEGIES: Final = ("none", "all-at-once", "canary", "linear")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_SNS_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


@dataclass(frozen=True)
class Serverless:
    memory_mb: int = 2048
    max_concurrency: int = 5


@dataclass(frozen=True)
class Async:
    output_s3_uri: str
    failure_s3_uri: str
    success_topic_arn: str = ""
    error_topic_arn: str = ""
    max_concurrent_per_instance: int = 4
    scale_to_zero: bool = False


@dataclass(frozen=True)
class Batch:
    input_s3_uri: str  # the prefix the production transform reads (the staging test sends its own rows)
    output_s3_prefix: str  # under the artifacts bucket; each job writes below <prefix>/<job name>/
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    max_payload_mb: int = 6


@dataclass(frozen=True)
class Hosting:
    """One stage's hosting mode and that mode's settings (the other modes' are None)."""

    mode: str = REALTIME
    serverless: Serverless | None = None
    asynchronous: Async | None = None
    batch: Batch | None = None

    @property
    def has_endpoint(self) -> bool:
        return self.mode != BATCH

    def template_parameters(self) -> dict[str, str]:
        """The endpoint template's parameters for this mode (the others keep their defaults)."""
        values = {"HostingMode": self.mode}
        if self.serverless is not None:
            values["ServerlessMemorySizeInMB"] = str(self.serverless.memory_mb)
            values["ServerlessMaxConcurrency"] = str(self.serverless.max_concurrency)
        if self.asynchronous is not None:
            a = self.asynchronous
            values.update(
                AsyncS3OutputPath=a.output_s3_uri,
                AsyncS3FailurePath=a.failure_s3_uri,
                AsyncSuccessTopicArn=a.success_topic_arn,
                AsyncErrorTopicArn=a.error_topic_arn,
                AsyncMaxConcurrentInvocationsPerInstance=str(a.max_concurrent_per_instance),
                AsyncScaleToZero="true" if a.scale_to_zero else "false",
            )
        return values

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hosting:
        return cls(
            mode=str(data.get("mode", REALTIME)),
            serverless=Serverless(**data["serverless"]) if data.get("serverless") else None,
            asynchronous=Async(**data["asynchronous"]) if data.get("asynchronous") else None,
            batch=Batch(**data["batch"]) if data.get("batch") else None,
        )


class _Section:
    """Reads one Hosting section: every key read is checked, every key left over is an error."""

    def __init__(self, raw: Mapping[str, Any], source: str) -> None:
        self.raw, self.source, self.used = dict(raw), source, {"Mode"}

    def error(self, message: str) -> StepError:
        return StepError(f"{self.source}: Hosting.{message}")

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        self.used.add(key)
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(f"{key} must be a whole number from {low} to {high}, not {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        self.used.add(key)
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{key} must be true or false, not {value!r}")
        return value

    def text(self, key: str, default: str, pattern: re.Pattern[str], what: str) -> str:
        self.used.add(key)
        value = self.raw.get(key, default)
        if not isinstance(value, str) or (value and not pattern.match(value)):
            raise self.error(f"{key} must be {what}, not {value!r}")
        return value

    def check_no_others(self, mode: str) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise self.error(
                f"{', '.join(unknown)}: not settings of Mode {mode}; see the README's Hosting table"
            )


def parse_hosting(
    raw: Any, parameters: Mapping[str, Any], stage: str, artifact_bucket: str, source: str
) -> Hosting:
    """The stage's Hosting section (absent: realtime), checked against its Parameters."""
    if raw is None:
        raw = {"Mode": REALTIME}
    if not isinstance(raw, dict):
        raise StepError(f'{source}: Hosting must be an object such as {{"Mode": "realtime"}}')
    mode = raw.get("Mode", REALTIME)
    if mode not in MODES:
        raise StepError(f"{source}: Hosting.Mode {mode!r} is not one of {', '.join(MODES)}")
    section = _Section(raw, source)
    base = f"s3://{artifact_bucket}"
    hosting = Hosting(mode=mode)
    if mode == SERVERLESS:
        memory = section.integer("MemorySizeInMB", 2048, 1024, 6144)
        if memory not in SERVERLESS_MEMORY_MB:
            raise section.error(f"MemorySizeInMB must be one of {', '.join(map(str, SERVERLESS_MEMORY_MB))}")
        hosting = Hosting(mode, serverless=Serverless(memory, section.integer("MaxConcurrency", 5, 1, 200)))
        sized = sorted(set(parameters) & set(INSTANCE_PARAMETERS))
        if sized:
            raise StepError(
                f"{source}: a serverless stage has no instances: remove {', '.join(sized)} from Parameters "
                "(set Hosting.MemorySizeInMB and Hosting.MaxConcurrency instead)"
            )
        for switch in ("EnableAutoScaling", "EnableDataCapture"):
            if str(parameters.get(switch, "false")).lower() == "true":
                raise StepError(
                    f"{source}: serverless endpoints do not support {switch[6:]}: set {switch} false"
                )
    elif mode == ASYNC:
        s3 = "an S3 URI (s3://bucket/prefix)"
        sns = "an SNS topic ARN (or empty)"
        hosting = Hosting(
            mode,
            asynchronous=Async(
                output_s3_uri=section.text(
                    "S3OutputPath", f"{base}/async-inference/{stage}/output", _S3_URI, s3
                ),
                failure_s3_uri=section.text(
                    "S3FailurePath", f"{base}/async-inference/{stage}/failure", _S3_URI, s3
                ),
                success_topic_arn=section.text("SuccessTopicArn", "", _SNS_ARN, sns),
                error_topic_arn=section.text("ErrorTopicArn", "", _SNS_ARN, sns),
                max_concurrent_per_instance=section.integer(
                    "MaxConcurrentInvocationsPerInstance", 4, 1, 1000
                ),
                scale_to_zero=section.flag("ScaleToZero", False),
            ),
        )
        if not hosting.asynchronous or not hosting.asynchronous.output_s3_uri:
            raise section.error("S3OutputPath must be set")
        if (
            hosting.asynchronous.scale_to_zero
            and str(parameters.get("EnableAutoScaling", "false")).lower() != "true"
        ):
            raise StepError(
                f"{source}: Hosting.ScaleToZero needs autoscaling: set Parameters.EnableAutoScaling true"
            )
    elif mode == BATCH:
        input_uri = section.text(
            "InputS3Uri", "", _S3_URI, "the S3 prefix to transform (s3://bucket/prefix/)"
        )
        if not input_uri and stage != "staging":
            raise section.error("InputS3Uri must name the S3 prefix the production transform reads")
        instance_type = section.text("InstanceType", "ml.m5.large", _INSTANCE_TYPE, "an ml.* instance type")
        hosting = Hosting(
            mode,
            batch=Batch(
                input_s3_uri=input_uri,
                output_s3_prefix=f"{base}/batch-transform/{stage}",
                instance_type=instance_type,
                instance_count=section.integer("InstanceCount", 1, 1, 100),
                max_payload_mb=section.integer("MaxPayloadInMB", 6, 1, 100),
            ),
        )
        endpoint_only = sorted(
            set(parameters) & {*INSTANCE_PARAMETERS, "EnableAutoScaling", "EnableDataCapture"}
        )
        if endpoint_only:
            raise StepError(
                f"{source}: a batch stage has no endpoint: remove {', '.join(endpoint_only)} from Parameters "
                "(size the transform with Hosting.InstanceType and Hosting.InstanceCount)"
            )
    section.check_no_others(mode)
    return hosting


@dataclass(frozen=True)
class Rollout:
    """How a real-time stage replaces its fleet: SageMaker's blue/green deployment guardrails.

    Traffic moves to the new fleet all at once, as a canary (StepPercent of capacity first, then the
    rest) or linearly (StepPercent at a time), waiting WaitSeconds between steps; any of the three alarms
    (model latency, 5xx, model errors, per minute) firing during the shift or the TerminationWaitSeconds
    after it rolls traffic back to the old fleet. `none`: SageMaker's default update, no alarms."""

    strategy: str = "none"
    step_percent: int = 10
    wait_seconds: int = 300
    termination_wait_seconds: int = 300
    max_execution_seconds: int = 3600
    max_model_latency_ms: int = 1000
    max_5xx_errors: int = 1
    max_model_errors: int = 1

    def template_parameters(self) -> dict[str, str]:
        return {
            "RolloutStrategy": self.strategy,
            "RolloutStepPercent": str(self.step_percent),
            "RolloutWaitSeconds": str(self.wait_seconds),
            "RolloutTerminationWaitSeconds": str(self.termination_wait_seconds),
            "RolloutMaxExecutionSeconds": str(self.max_execution_seconds),
            "RollbackModelLatencyMicroseconds": str(self.max_model_latency_ms * 1000),
            "Rollback5xxErrors": str(self.max_5xx_errors),
            "RollbackModelErrors": str(self.max_model_errors),
        }


# What production gets without a Rollout section: a 10 % canary watched for five minutes.
DEFAULT_ROLLOUT: Final = {"staging": Rollout(), "prod": Rollout(strategy="canary")}


def parse_rollout(raw: Any, hosting: Hosting, stage: str, source: str) -> Rollout:
    """The stage's Rollout section; guardrails need instance-based real-time endpoints (SageMaker's
    deployment guardrails exclude serverless, async and batch)."""
    if raw is None:
        return DEFAULT_ROLLOUT[stage] if hosting.mode == REALTIME else Rollout()
    if not isinstance(raw, dict):
        raise StepError(f'{source}: Rollout must be an object such as {{"Strategy": "canary"}}')
    strategy = raw.get("Strategy", "canary")
    if strategy not in ROLLOUT_STRATEGIES:
        raise StepError(
            f"{source}: Rollout.Strategy {strategy!r} is not one of {', '.join(ROLLOUT_STRATEGIES)}"
        )
    if strategy != "none" and hosting.mode != REALTIME:
        raise StepError(
            f"{source}: Rollout.Strategy {strategy} needs Hosting.Mode realtime (SageMaker's blue/green "
            f"guardrails work on instance-based real-time endpoints only); remove Rollout or set it to none"
        )
    section = _Section(raw, source)
    section.used.add("Strategy")
    section.used.discard("Mode")
    rollout = Rollout(
        strategy=strategy,
        step_percent=section.integer("StepPercent", 10, 1, 99),
        wait_seconds=section.integer("WaitSeconds", 300, 0, 3600),
        termination_wait_seconds=section.integer("TerminationWaitSeconds", 300, 0, 3600),
        max_execution_seconds=section.integer("MaxExecutionSeconds", 3600, 600, 14400),
        max_model_latency_ms=section.integer("MaxModelLatencyMs", 1000, 1, 60000),
        max_5xx_errors=section.integer("Max5xxErrors", 1, 1, 100000),
        max_model_errors=section.integer("MaxModelErrors", 1, 1, 100000),
    )
    unknown = sorted(set(raw) - section.used)
    if unknown:
        raise StepError(f"{source}: Rollout.{', '.join(unknown)}: unknown; see the README's Rollout table")
    return rollout


def hosting_file(stage: str) -> str:
    """build/<stage>-hosting.json: the parsed Hosting section the deploy and test steps read."""
    return f"{check_stage(stage)}-hosting.json"
