"""Command line: `run-pipeline` and `get-pipeline-definition`.

Defaults come from the CI/CD variables the SageMaker project sets on this repository, so the
CI job needs no flags: SAGEMAKER_EXECUTION_ROLE_ARN, ARTIFACT_BUCKET, MODEL_PACKAGE_GROUP_NAME,
AWS_DEFAULT_REGION (or AWS_REGION), SAGEMAKER_PROJECT_NAME and SAGEMAKER_PROJECT_ID. Optional:
PIPELINE_STEP_CACHING=false (no step caching), PIPELINE_SPOT_TRAINING=false (on-demand training),
PIPELINE_TIMEOUT_MINUTES (how long to follow an execution before stopping it, default 240).

`run-pipeline` writes the definition and the execution it started into --artifacts-dir (default
build/: the CI job keeps it as an artifact): pipeline-definition.json, pipeline-execution.json.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import sys
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.status import printer

ENV_ROLE = "SAGEMAKER_EXECUTION_ROLE_ARN"
ENV_BUCKET = "ARTIFACT_BUCKET"
ENV_GROUP = "MODEL_PACKAGE_GROUP_NAME"
ENV_REGION = "AWS_DEFAULT_REGION"
ENV_REGION_ALIAS = "AWS_REGION"
ENV_PROJECT_NAME = "SAGEMAKER_PROJECT_NAME"
ENV_PROJECT_ID = "SAGEMAKER_PROJECT_ID"
ENV_STEP_CACHING = "PIPELINE_STEP_CACHING"
ENV_SPOT_TRAINING = "PIPELINE_SPOT_TRAINING"
ENV_TIMEOUT_MINUTES = "PIPELINE_TIMEOUT_MINUTES"
INPUT_PARAMETER = "InputDataUrl"
DEFAULT_MODULE = "pipelines.abalone.pipeline"
DEFAULT_TIMEOUT_MINUTES = 240.0
DEFINITION_FILE = "pipeline-definition.json"
EXECUTION_FILE = "pipeline-execution.json"
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """A required setting is missing or invalid; the message names the variable and the flag."""


@dataclass(frozen=True)
class RunConfig:
    region: str
    role_arn: str
    artifact_bucket: str
    model_package_group_name: str
    pipeline_name: str
    project_name: str = ""
    project_id: str = ""
    module: str = DEFAULT_MODULE
    parameters: Mapping[str, str] = field(default_factory=dict)
    input_data: str = ""
    step_caching: bool = True
    spot_training: bool = True
    timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES


def _required(value: str | None, env: str, flag: str) -> str:
    if not value:
        raise ConfigError(f"{env} is not set; set the variable or pass {flag}")
    return value


def parse_parameters(items: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--parameter {item!r}: expected Name=Value")
        values[name] = value
    return values


def _switch(flag_off: bool, env: Mapping[str, str], name: str) -> bool:
    """On unless the --no-... flag is given or the variable says false/0/no/off."""
    value = env.get(name, "").strip().lower()
    if value and value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ConfigError(f"{name}={value!r}: expected true or false")
    return not flag_off and value not in ("false", "0", "no", "off")


def _minutes(value: Any, env: Mapping[str, str]) -> float:
    raw = value if value is not None else env.get(ENV_TIMEOUT_MINUTES, "").strip() or DEFAULT_TIMEOUT_MINUTES
    try:
        minutes = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_TIMEOUT_MINUTES}/--timeout-minutes {raw!r} is not a number") from None
    if minutes <= 0:
        raise ConfigError(f"the timeout must be positive, got {minutes} minutes")
    return minutes


def load_config(args: argparse.Namespace, env: Mapping[str, str]) -> RunConfig:
    """Flags win over environment variables; anything required and missing is a ConfigError."""
    region = args.region or env.get(ENV_REGION) or env.get(ENV_REGION_ALIAS)
    project_name = args.project_name or env.get(ENV_PROJECT_NAME, "")
    project_id = args.project_id or env.get(ENV_PROJECT_ID, "")
    # <project-name>-<project-id>-model-build: the CI role may run only the pipeline named after its project.
    default_name = f"{project_name}-{project_id}-model-build" if project_name and project_id else "AbalonePipeline"
    return RunConfig(
        region=_required(region, ENV_REGION, "--region"),
        role_arn=_required(args.role_arn or env.get(ENV_ROLE), ENV_ROLE, "--role-arn"),
        artifact_bucket=_required(args.artifact_bucket or env.get(ENV_BUCKET), ENV_BUCKET, "--artifact-bucket"),
        model_package_group_name=_required(
            args.model_package_group_name or env.get(ENV_GROUP), ENV_GROUP, "--model-package-group-name"
        ),
        pipeline_name=args.pipeline_name or default_name,
        project_name=project_name,
        project_id=project_id,
        module=args.module_name,
        parameters=parse_parameters(args.parameter or []),
        input_data=getattr(args, "input_data", "") or "",
        step_caching=_switch(args.no_step_cache, env, ENV_STEP_CACHING),
        spot_training=_switch(args.no_spot, env, ENV_SPOT_TRAINING),
        timeout_minutes=_minutes(getattr(args, "timeout_minutes", None), env),
    )


def build_definition(config: RunConfig) -> tuple[str, list[dict[str, str]]]:
    """The pipeline definition JSON and the tags for the pipeline."""
    os.environ.setdefault(ENV_REGION, config.region)
    # The SDK would otherwise call IAM to validate the role; CI credentials may not allow that.
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
    logging.getLogger("sagemaker").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(config.module)
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("sagemaker"):
                logging.getLogger(name).setLevel(logging.ERROR)
        options = {"enable_caching": config.step_caching, "use_spot_training": config.spot_training}
        accepted = inspect.signature(module.get_pipeline).parameters
        pipeline = module.get_pipeline(
            region=config.region,
            role=config.role_arn,
            default_bucket=config.artifact_bucket,
            pipeline_name=config.pipeline_name,
            model_package_group_name=config.model_package_group_name,
            base_job_prefix=config.pipeline_name,
            **{k: v for k, v in options.items() if k in accepted},
        )
        definition = json.dumps(json.loads(pipeline.definition()), indent=2, sort_keys=True)
    return definition, module.project_tags(config.project_name, config.project_id)


def stage_input(s3: Any, config: RunConfig) -> dict[str, str]:
    """Parameters for this run; a local --input-data file is uploaded next to the artifacts first."""
    parameters = dict(config.parameters)
    source = config.input_data
    if not source:
        return parameters
    if not source.startswith("s3://"):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"--input-data {source!r} is neither an s3:// URI nor an existing file")
        key = f"{config.pipeline_name}/input/{path.name}"
        s3.upload_file(str(path), config.artifact_bucket, key)
        source = f"s3://{config.artifact_bucket}/{key}"
        print(f"uploaded {path} to {source}", flush=True)
    parameters[INPUT_PARAMETER] = source
    return parameters


def _clients(region: str) -> tuple[Any, Any]:
    import boto3

    session = boto3.Session(region_name=region)
    return session.client("s3"), session.client("sagemaker")


def run_local(config: RunConfig, definition: str, workdir: Path | None) -> int:
    from pipelines.local.runner import LocalRunError, LocalRunner

    s3, sagemaker = _clients(config.region)
    parameters = stage_input(s3, config)
    execution_id = f"local-{uuid.uuid4().hex[:12]}"
    root = (workdir or Path(".pipeline-local")).resolve()  # scripts run with the step dir as cwd
    print(f"running {config.pipeline_name} locally (execution {execution_id}, work dir {root / execution_id})")
    runner = LocalRunner(
        json.loads(definition),
        s3=s3,
        sagemaker=sagemaker,
        workdir=root / execution_id,
        pipeline_name=config.pipeline_name,
        execution_id=execution_id,
        report=printer(),
    )
    try:
        result = runner.run(parameters)
    except LocalRunError as error:
        print(f"run-pipeline: {error}", file=sys.stderr)
        return 1
    if result.status != "Succeeded":
        print(f"run-pipeline: execution {execution_id} failed: {result.failure_reason}", file=sys.stderr)
        return 1
    print(f"execution {execution_id} succeeded")
    return 0


def write_artifact(directory: Path | None, name: str, document: Any) -> None:
    """Keep a JSON document in the artifacts directory (the CI job's artifact), if there is one."""
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    text = document if isinstance(document, str) else json.dumps(document, indent=2, sort_keys=True)
    (directory / name).write_text(text + "\n")


def run_remote(
    config: RunConfig,
    definition: str,
    tags: list[dict[str, str]],
    poll_seconds: float,
    artifacts: Path | None = None,
    clients: Any = None,
) -> int:
    from pipelines.remote import RemoteRunError, follow_execution, start_execution, upsert_pipeline

    s3, sagemaker = clients or _clients(config.region)
    write_artifact(artifacts, DEFINITION_FILE, definition)
    parameters = stage_input(s3, config)
    try:
        arn = upsert_pipeline(
            sagemaker, config.pipeline_name, definition, config.role_arn, tags, "Abalone model build (GitLab CI)"
        )
        print(f"upserted {arn}")
        execution_arn = start_execution(sagemaker, config.pipeline_name, parameters)
    except RemoteRunError as error:
        print(f"run-pipeline: {error}", file=sys.stderr)
        return 1
    record = {"pipeline_arn": arn, "execution_arn": execution_arn, "parameters": parameters}
    write_artifact(artifacts, EXECUTION_FILE, {**record, "status": "Executing"})
    print(f"started {execution_arn}")
    status, reason = follow_execution(
        sagemaker, execution_arn, printer(), poll_seconds=poll_seconds, timeout_seconds=config.timeout_minutes * 60
    )
    write_artifact(artifacts, EXECUTION_FILE, {**record, "status": status, "reason": reason})
    if status != "Succeeded":
        print(f"run-pipeline: execution {status}: {reason}", file=sys.stderr)
        return EXIT_INTERRUPTED if status == "Interrupted" else 1
    print("execution succeeded")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--module-name", default=DEFAULT_MODULE, help="module with get_pipeline()")
    parser.add_argument("--region", help=f"default ${ENV_REGION}")
    parser.add_argument("--role-arn", help=f"default ${ENV_ROLE}")
    parser.add_argument("--artifact-bucket", help=f"default ${ENV_BUCKET}")
    parser.add_argument("--model-package-group-name", help=f"default ${ENV_GROUP}")
    parser.add_argument("--pipeline-name", help=f"default ${ENV_PROJECT_NAME}-${ENV_PROJECT_ID}-model-build")
    parser.add_argument("--project-name", help=f"default ${ENV_PROJECT_NAME}")
    parser.add_argument("--project-id", help=f"default ${ENV_PROJECT_ID}")
    parser.add_argument("--parameter", action="append", metavar="NAME=VALUE", help="pipeline parameter value")
    parser.add_argument("--no-step-cache", action="store_true", help=f"no step caching (${ENV_STEP_CACHING}=false)")
    parser.add_argument("--no-spot", action="store_true", help=f"on-demand training (${ENV_SPOT_TRAINING}=false)")


def run_pipeline(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run-pipeline", description="Upsert, start and follow the pipeline.")
    _common(parser)
    parser.add_argument("--local", action="store_true", help="run the definition on this machine, no SageMaker jobs")
    parser.add_argument("--input-data", help="s3:// URI or local CSV file for the InputDataUrl parameter")
    parser.add_argument("--workdir", type=Path, help="local runs: work directory (default ./.pipeline-local)")
    parser.add_argument("--poll-seconds", type=float, default=15.0)
    parser.add_argument(
        "--timeout-minutes", type=float, help=f"stop the execution after this long (${ENV_TIMEOUT_MINUTES}, 240)"
    )
    parser.add_argument(
        "--artifacts-dir", type=Path, default=Path("build"), help="where the definition and execution ARN go"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args, os.environ)
        definition, tags = build_definition(config)
        if args.local:
            write_artifact(args.artifacts_dir, DEFINITION_FILE, definition)
            return run_local(config, definition, args.workdir)
        return run_remote(config, definition, tags, args.poll_seconds, args.artifacts_dir)
    except ConfigError as error:
        print(f"run-pipeline: {error}", file=sys.stderr)
        return 2


def get_pipeline_definition(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="get-pipeline-definition", description="Print the pipeline definition JSON.")
    _common(parser)
    parser.add_argument("--file-name", type=Path, help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    try:
        definition, _ = build_definition(load_config(args, os.environ))
    except ConfigError as error:
        print(f"get-pipeline-definition: {error}", file=sys.stderr)
        return 2
    if args.file_name:
        args.file_name.write_text(definition + "\n")
    else:
        print(definition)
    return 0


def main() -> None:
    sys.exit(run_pipeline())


def main_definition() -> None:
    sys.exit(get_pipeline_definition())


if __name__ == "__main__":
    main()
