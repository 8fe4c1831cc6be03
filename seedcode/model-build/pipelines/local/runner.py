"""Execute a SageMaker pipeline definition JSON on this machine.

What SageMaker would run, this runs, with the rules each service and image enforces:

- Processing: the script runs with `/opt/ml/processing` mapped into a work directory, its inputs
  (the code input included: SageMaker uploads only the step's `code` file) downloaded from S3 and
  its outputs uploaded (boto3: real S3 or moto via AWS_ENDPOINT_URL), the job's Environment set
  (PYTHONPATH included, the host's left out) and, through container_python.py, only the image's
  packages importable (pipelines/local/images.py, sources there); an unknown image is refused.
- Training (built-in XGBoost image only): builtin_xgboost.py, in-process, with the xgboost release
  the image runs (other versions refused); EnableManagedSpotTraining needs MaxWaitTimeInSeconds >=
  MaxRuntimeInSeconds, a CheckpointConfig S3Uri must be an S3 URI (CreateTrainingJob API reference).
- Instance types of processing, training and the registered package's real-time and transform
  lists must be in the enums of botocore's SageMaker model (what the API validates).
- Condition evaluates property files; RegisterModel calls CreateModelPackage with the definition's
  arguments; Fail fails the run.

Not reproduced: step caching (every local run is fresh), retry policies (nothing is retried),
spot interruptions and checkpoint files, instance counts above one, the images' Python versions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipelines.local import builtin_xgboost, images
from pipelines.local.expressions import Context, evaluate_condition, references, resolve
from pipelines.status import StatusPrinter

PROCESSING_ROOT = "/opt/ml/processing"
CONTAINER_PYTHON = Path(__file__).resolve().parent / "container_python.py"
# Host variables a job must not inherit: in the container only the job's Environment sets them.
_HOST_ONLY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
SUPPORTED = ("Processing", "Training", "Condition", "RegisterModel", "Fail")


class LocalRunError(RuntimeError):
    """The local run failed; the message names the step and the reason."""


@dataclass
class StepFailed(Exception):
    step: str
    reason: str


@dataclass
class RunResult:
    status: str  # Succeeded | Failed
    failure_reason: str = ""
    steps: dict[str, str] = field(default_factory=dict)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise LocalRunError(f"expected an s3:// URI, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def download_prefix(s3: Any, uri: str, target: Path) -> int:
    """Download one object or every object under an S3 prefix into `target`; return the file count."""
    bucket, prefix = split_s3_uri(uri)
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue
            if key == prefix:
                relative = Path(key).name
            elif prefix.endswith("/") or key[len(prefix)] == "/" or not prefix:
                relative = key[len(prefix) :].lstrip("/")
            else:
                continue  # "data/train" must not match "data/training/..."
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(destination))
            count += 1
    if count == 0:
        raise LocalRunError(f"nothing found at {uri}")
    return count


def upload_dir(s3: Any, source: Path, uri: str) -> None:
    bucket, prefix = split_s3_uri(uri)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix.rstrip("/"), path.relative_to(source).as_posix()]))
        s3.upload_file(str(path), bucket, key)


def step_graph(definition: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
    """All steps (condition branches included) and the names each one waits for."""
    steps: dict[str, dict[str, Any]] = {}
    parents: dict[str, set[str]] = {}

    def add(step: dict[str, Any], branch_of: str | None) -> None:
        name = step["Name"]
        steps[name] = step
        arguments = step.get("Arguments", {})
        if step.get("Type") == "Condition":  # its branches' references belong to the branch steps
            arguments = arguments.get("Conditions", [])
        parents[name] = set(references(arguments)) | set(step.get("DependsOn", []))
        parents[name] |= set(references(step.get("PropertyFiles", [])))
        if branch_of:
            parents[name].add(branch_of)
        if step.get("Type") == "Condition":
            for child in step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", []):
                add(child, name)

    for step in definition.get("Steps", []):
        add(step, None)
    for name, waits_for in parents.items():
        unknown = waits_for - set(steps)
        if unknown:
            raise LocalRunError(f"step {name!r} refers to unknown step(s) {sorted(unknown)}")
    return steps, parents


def execution_order(steps: Mapping[str, Any], parents: Mapping[str, set[str]]) -> list[str]:
    """Topological order, ties broken by definition order (deterministic)."""
    order: list[str] = []
    done: set[str] = set()
    pending = list(steps)
    while pending:
        ready = [name for name in pending if parents[name] <= done]
        if not ready:
            raise LocalRunError(f"the steps {pending} depend on each other in a cycle")
        order.append(ready[0])
        done.add(ready[0])
        pending.remove(ready[0])
    return order


def check_spot(arguments: Mapping[str, Any]) -> None:
    """CreateTrainingJob's rules for managed spot training (API reference: StoppingCondition, CheckpointConfig)."""
    if not arguments.get("EnableManagedSpotTraining"):
        return
    stopping = arguments.get("StoppingCondition", {})
    runtime, wait = stopping.get("MaxRuntimeInSeconds"), stopping.get("MaxWaitTimeInSeconds")
    if wait is None:
        raise builtin_xgboost.TrainingError("managed spot training needs StoppingCondition.MaxWaitTimeInSeconds")
    if runtime is not None and int(wait) < int(runtime):
        raise builtin_xgboost.TrainingError(
            f"MaxWaitTimeInSeconds ({wait}) must be at least MaxRuntimeInSeconds ({runtime}) for managed spot training"
        )
    checkpoint = arguments.get("CheckpointConfig")
    if checkpoint is not None and not str(checkpoint.get("S3Uri", "")).startswith(("s3://", "https://")):
        raise builtin_xgboost.TrainingError(f"CheckpointConfig.S3Uri {checkpoint.get('S3Uri')!r} is not an S3 URI")


class LocalRunner:
    """Runs one execution of a definition; clients are injected (boto3 S3 and SageMaker)."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        *,
        s3: Any,
        sagemaker: Any,
        workdir: Path,
        pipeline_name: str,
        execution_id: str,
        report: StatusPrinter,
    ) -> None:
        self.definition = definition
        self.s3 = s3
        self.sagemaker = sagemaker
        self.workdir = workdir
        self.pipeline_name = pipeline_name
        self.execution_id = execution_id
        self.report = report

    def parameters(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        declared = {p["Name"]: p for p in self.definition.get("Parameters", [])}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise LocalRunError(f"unknown pipeline parameter(s) {unknown}; the pipeline has {sorted(declared)}")
        casts = {"Integer": int, "Float": float, "String": str, "Boolean": lambda v: str(v).lower() == "true"}
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            raw = overrides.get(name, spec.get("DefaultValue"))
            if raw is None:
                raise LocalRunError(f"pipeline parameter {name!r} has no default; pass it with --parameter")
            try:
                values[name] = casts.get(spec.get("Type", "String"), str)(raw)
            except ValueError:
                raise LocalRunError(f"parameter {name!r} must be {spec.get('Type')}, got {raw!r}") from None
        return values

    def run(self, overrides: Mapping[str, Any] | None = None) -> RunResult:
        now = datetime.now(timezone.utc).isoformat()
        context = Context(
            parameters=self.parameters(overrides or {}),
            execution={
                "PipelineExecutionId": self.execution_id,
                "PipelineName": self.pipeline_name,
                "PipelineExecutionArn": f"local:{self.pipeline_name}/execution/{self.execution_id}",
                "StartDateTime": now,
                "CurrentDateTime": now,
            },
        )
        steps, parents = step_graph(self.definition)
        for name, step in steps.items():
            if step.get("Type") not in SUPPORTED:
                raise LocalRunError(
                    f"step {name!r} has type {step.get('Type')!r}, which local runs do not support "
                    f"(supported: {', '.join(SUPPORTED)}); run it on SageMaker without --local"
                )
        result = RunResult(status="Succeeded")
        skipped: set[str] = set()
        for name in execution_order(steps, parents):
            if name in skipped or parents[name] & skipped:
                skipped.add(name)
                continue
            step = steps[name]
            self.report(name, "Executing", "")
            try:
                branch_not_taken = self._run_step(step, context)
            except StepFailed as failure:
                self.report(name, "Failed", failure.reason)
                result.status, result.failure_reason = "Failed", f"step {name} failed: {failure.reason}"
                result.steps[name] = "Failed"
                break
            skipped |= branch_not_taken
            result.steps[name] = "Succeeded"
            self.report(name, "Succeeded", "")
        result.properties = context.steps
        return result

    # --- step types -----------------------------------------------------------------------------
    def _run_step(self, step: Mapping[str, Any], context: Context) -> set[str]:
        kind, name = step["Type"], step["Name"]
        try:
            arguments = resolve(step.get("Arguments", {}), context) if kind != "Condition" else step["Arguments"]
        except ValueError as error:
            raise StepFailed(name, str(error)) from None
        if kind == "Processing":
            self._processing(name, arguments, step.get("PropertyFiles", []), context)
        elif kind == "Training":
            self._training(name, arguments, context)
        elif kind == "RegisterModel":
            self._register(name, arguments, context)
        elif kind == "Fail":
            raise StepFailed(name, str(arguments.get("ErrorMessage", "the pipeline reached a Fail step")))
        elif kind == "Condition":
            try:
                outcome = all(evaluate_condition(c, context) for c in arguments["Conditions"])
            except ValueError as error:
                raise StepFailed(name, str(error)) from None
            context.steps[name] = {"Outcome": outcome}
            not_taken = arguments.get("ElseSteps" if outcome else "IfSteps", [])
            return {child["Name"] for child in not_taken}
        return set()

    def _map(self, value: Any, root: Path) -> Any:
        if isinstance(value, str) and value.startswith(PROCESSING_ROOT):
            return str(root) + value[len(PROCESSING_ROOT) :]
        return value

    def _processing(
        self, name: str, arguments: Mapping[str, Any], property_files: list[Mapping[str, Any]], context: Context
    ) -> None:
        root = self.workdir / name / "processing"
        spec = arguments.get("AppSpecification", {})
        try:
            image, packages = images.image_packages(str(spec.get("ImageUri", "")))
            cluster = arguments.get("ProcessingResources", {}).get("ClusterConfig", {})
            images.check_instance_type("processing", str(cluster.get("InstanceType", "")))
        except images.ImageError as error:
            raise StepFailed(name, str(error)) from None
        for item in arguments.get("ProcessingInputs", []):
            source = item.get("S3Input")
            if not source:
                raise StepFailed(name, f"input {item.get('InputName')!r}: only S3 inputs run locally")
            try:
                download_prefix(self.s3, source["S3Uri"], Path(self._map(source["LocalPath"], root)))
            except (LocalRunError, OSError) as error:
                raise StepFailed(name, f"input {item.get('InputName')!r}: {error}") from None
        outputs = arguments.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for item in outputs:
            Path(self._map(item["S3Output"]["LocalPath"], root)).mkdir(parents=True, exist_ok=True)
        command = [self._map(part, root) for part in spec.get("ContainerEntrypoint", [])]
        command += [self._map(str(part), root) for part in spec.get("ContainerArguments", [])]
        if len(command) < 2 or Path(command[0]).name not in ("python", "python3"):
            raise StepFailed(name, f"local runs run `python3 <script>` entrypoints only, not {command[:2]}")
        guard = [sys.executable, str(CONTAINER_PYTHON), "--image", image, "--allow", ",".join(sorted(packages))]
        command = [*guard, "--root", str(root), *command[1:]]
        env = {k: v for k, v in os.environ.items() if k not in _HOST_ONLY_ENV}
        env.update({k: self._map(str(v), root) for k, v in arguments.get("Environment", {}).items()})
        log_path = self.workdir / name / "output.log"
        with log_path.open("w") as log:
            code = subprocess.run(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        if code.returncode != 0:
            tail = log_path.read_text().strip().splitlines()[-5:]
            raise StepFailed(name, f"script exited with {code.returncode}: " + " | ".join(tail))
        properties: dict[str, Any] = {"ProcessingJobName": f"{name}-{self.execution_id}"}
        named_outputs: dict[str, Any] = {}
        for item in outputs:
            uri = item["S3Output"]["S3Uri"]
            upload_dir(self.s3, Path(self._map(item["S3Output"]["LocalPath"], root)), uri)
            named_outputs[item["OutputName"]] = {"OutputName": item["OutputName"], "S3Output": dict(item["S3Output"])}
        properties["ProcessingOutputConfig"] = {"Outputs": named_outputs}
        context.steps[name] = properties
        for spec_file in property_files:
            output = named_outputs.get(spec_file["OutputName"])
            if output is None:
                raise StepFailed(
                    name, f"property file {spec_file['PropertyFileName']!r}: no output {spec_file['OutputName']!r}"
                )
            path = Path(self._map(output["S3Output"]["LocalPath"], root)) / spec_file["FilePath"]
            try:
                context.property_files[f"{name}.{spec_file['PropertyFileName']}"] = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise StepFailed(
                    name, f"property file {spec_file['FilePath']!r} is missing or not JSON: {error}"
                ) from None

    def _training(self, name: str, arguments: Mapping[str, Any], context: Context) -> None:
        image = arguments.get("AlgorithmSpecification", {}).get("TrainingImage", "")
        try:
            builtin_xgboost.check_release(image)
            images.check_instance_type("training", str(arguments.get("ResourceConfig", {}).get("InstanceType", "")))
            check_spot(arguments)
        except (builtin_xgboost.TrainingError, images.ImageError) as error:
            raise StepFailed(name, str(error)) from None
        data_root = self.workdir / name / "data"
        channels: dict[str, Any] = {}
        for channel in arguments.get("InputDataConfig", []):
            channel_name = channel["ChannelName"]
            content_type = channel.get("ContentType", "text/csv")
            if content_type not in ("text/csv", "csv"):
                raise StepFailed(name, f"channel {channel_name!r} is {content_type}; local runs read text/csv only")
            try:
                download_prefix(self.s3, channel["DataSource"]["S3DataSource"]["S3Uri"], data_root / channel_name)
            except (LocalRunError, OSError) as error:
                raise StepFailed(name, f"channel {channel_name!r}: {error}") from None
            channels[channel_name] = builtin_xgboost.read_channel(data_root / channel_name)
        if "train" not in channels:
            raise StepFailed(name, "the built-in XGBoost algorithm needs a 'train' channel")
        try:
            booster = builtin_xgboost.train(
                arguments.get("HyperParameters", {}), channels["train"], channels.get("validation")
            )
        except builtin_xgboost.TrainingError as error:
            raise StepFailed(name, str(error)) from None
        job_name = f"{name}-{self.execution_id}"
        output = arguments["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        bucket, key = split_s3_uri(f"{output}/{job_name}/output/model.tar.gz")
        self.s3.put_object(Bucket=bucket, Key=key, Body=builtin_xgboost.model_tarball(booster, data_root))
        context.steps[name] = {
            "TrainingJobName": job_name,
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://{bucket}/{key}"},
        }

    def _register(self, name: str, arguments: Mapping[str, Any], context: Context) -> None:
        spec = arguments.get("InferenceSpecification", {})
        try:
            for kind, field_name in (
                ("real-time inference", "SupportedRealtimeInferenceInstanceTypes"),
                ("batch transform", "SupportedTransformInstanceTypes"),
            ):
                for instance_type in spec.get(field_name, []):
                    images.check_instance_type(kind, str(instance_type))
        except images.ImageError as error:
            raise StepFailed(name, f"{field_name}: {error}") from None
        request = {k: v for k, v in arguments.items() if v not in ({}, None)}
        metrics = request.get("ModelMetrics")
        if isinstance(metrics, dict):
            request["ModelMetrics"] = {k: v for k, v in metrics.items() if v}
        try:
            response = self.sagemaker.create_model_package(**request)
        except Exception as error:  # noqa: BLE001 - any API error fails this step with its message
            raise StepFailed(name, f"CreateModelPackage failed: {error}") from None
        context.steps[name] = {"ModelPackageArn": response["ModelPackageArn"]}
