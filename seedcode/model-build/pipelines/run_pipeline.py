"""Command line: `run-pipeline` and `get-pipeline-definition`.

Defaults come from the CI/CD variables the SageMaker project sets on this repository, so the
CI job needs no flags: SAGEMAKER_EXECUTION_ROLE_ARN, ARTIFACT_BUCKET, MODEL_PACKAGE_GROUP_NAME,
AWS_DEFAULT_REGION (or AWS_REGION), SAGEMAKER_PROJECT_NAME and SAGEMAKER_PROJECT_ID. Optional:
PIPELINE_STEP_CACHING=false (no step caching), PIPELINE_SPOT_TRAINING=false (on-demand training),
PIPELINE_TIMEOUT_MINUTES (how long to follow an execution before stopping it, default 240).

`run-pipeline` writes the definition and the execution it started into --artifacts-dir (default
build/: the CI job keeps it as an artifact): pipeline-definition.json, pipeline-execution.json.
GitLab's predefined variables become the registered version's provenance (pipelines/provenance.py).

Every run writes `--report-dir` (default `reports/`): `evaluation.json` (the evaluate step's report),
`metrics.txt` (the same numbers for GitLab's metrics report) and `run.json` (execution, quality gate,
registered ARN, provenance). The last lines printed say the test MSE against the threshold and what was
registered; a failed quality gate ends the log with the metric, its value and the threshold.
`--candidate` (merge requests) evaluates without registering; `--review` then posts the comparison note
on the merge request (pipelines/review.py).
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

from pipelines.abalone import pipeline as abalone
from pipelines.provenance import Provenance
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
THRESHOLD_PARAMETER = "MseThreshold"
DEFAULT_MODULE = "pipelines.abalone.pipeline"
DEFAULT_TIMEOUT_MINUTES = 240.0
DEFINITION_FILE = "pipeline-definition.json"
EXECUTION_FILE = "pipeline-execution.json"
EXIT_INTERRUPTED = 130
DEFAULT_REPORT_DIR = Path("reports")
EVALUATION_FILE = "evaluation.json"
METRICS_FILE = "metrics.txt"
RUN_FILE = "run.json"


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
    candidate: bool = False
    provenance: Provenance = field(default_factory=Provenance)


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
        candidate=bool(getattr(args, "candidate", False)),
        provenance=Provenance.from_ci(env),
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


def execution_parameters(config: RunConfig, definition: Mapping[str, Any]) -> dict[str, str]:
    """--parameter values over what the run sets itself: provenance from CI and, for a candidate,
    RegisterModel=false (only those the definition declares, so other pipeline modules still run)."""
    declared = {p["Name"] for p in definition.get("Parameters", [])}
    automatic = {**config.provenance.parameters(), **({abalone.PARAM_REGISTER: "false"} if config.candidate else {})}
    if config.candidate and abalone.PARAM_REGISTER not in declared:
        raise ConfigError(f"--candidate needs a pipeline with the {abalone.PARAM_REGISTER} parameter")
    return {**{k: v for k, v in automatic.items() if k in declared}, **config.parameters}


def stage_input(s3: Any, config: RunConfig, definition: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Parameters for this run; a local --input-data file is uploaded next to the artifacts first."""
    parameters = execution_parameters(config, definition) if definition is not None else dict(config.parameters)
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


@dataclass
class RunReport:
    """What one run did, for the report files, the merge request note and the closing lines."""

    pipeline_name: str
    execution_id: str
    status: str  # Succeeded | Failed | Stopped
    candidate: bool
    threshold: float | None
    evaluation: dict[str, Any] | None = None
    registered_arn: str = ""
    failure_reason: str = ""
    provenance: dict[str, str] = field(default_factory=dict)

    @property
    def mse(self) -> float | None:
        try:
            return float(self.evaluation["regression_metrics"]["mse"]["value"])  # type: ignore[index]
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def gate_passed(self) -> bool | None:
        if self.mse is None or self.threshold is None:
            return None
        return self.mse <= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline_name": self.pipeline_name, "execution_id": self.execution_id, "status": self.status,
            "candidate": self.candidate, "mse_threshold": self.threshold, "test_mse": self.mse,
            "quality_gate_passed": self.gate_passed, "registered_model_package_arn": self.registered_arn,
            "failure_reason": self.failure_reason, "provenance": self.provenance,
        }


def threshold_of(definition: Mapping[str, Any], parameters: Mapping[str, str]) -> float | None:
    """The MSE threshold this run gates on: the --parameter value, else the definition's default."""
    declared = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
    raw = parameters.get(THRESHOLD_PARAMETER, declared.get(THRESHOLD_PARAMETER))
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def read_evaluation(s3: Any, uri: str) -> dict[str, Any] | None:
    """The execution's evaluation.json, or None when the run stopped before writing it."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:  # noqa: BLE001 - missing or unreadable: the report says there is none
        return None
    data = json.loads(body)
    return data if isinstance(data, dict) else None


def metrics_report(evaluation: Mapping[str, Any]) -> str:
    """GitLab's metrics report (one `name value` line per metric) with evaluation.json's numbers."""
    lines = [f"test_{name} {values['value']!r}" for name, values in sorted(evaluation["regression_metrics"].items())]
    if "test_rows" in evaluation:
        lines.append(f"test_rows {evaluation['test_rows']}")
    return "\n".join(lines) + "\n"


def write_reports(report_dir: Path, report: RunReport) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    if report.evaluation is not None:
        (report_dir / EVALUATION_FILE).write_text(json.dumps(report.evaluation, indent=2, sort_keys=True) + "\n")
        (report_dir / METRICS_FILE).write_text(metrics_report(report.evaluation))
    (report_dir / RUN_FILE).write_text(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")


def closing_lines(report: RunReport) -> tuple[list[str], list[str]]:
    """(stdout lines, stderr lines) that end the log: the metric, its value, the threshold, the outcome."""
    gate = ""
    if report.mse is not None and report.threshold is not None:
        relation = "<=" if report.gate_passed else "is above"
        gate = f"test MSE {report.mse:.4f} {relation} the threshold {report.threshold:g} ({THRESHOLD_PARAMETER})"
    if report.status == "Succeeded":
        out = [f"quality gate passed: {gate}" if gate else "quality gate passed"]
        if report.registered_arn:
            out.append(f"registered {report.registered_arn}")
        elif report.candidate:
            out.append("candidate evaluated, not registered (RegisterModel=false); merging registers it")
        return out, []
    failed = (
        f"run-pipeline: execution {report.execution_id} {report.status.lower()}: {report.failure_reason}"
        if report.execution_id
        else f"run-pipeline: {report.failure_reason}"
    )
    if report.gate_passed is False:
        return [], [failed, f"run-pipeline: quality gate failed: {gate}; nothing was registered"]
    return [], [failed]


def run_local(config: RunConfig, definition: str, workdir: Path | None) -> RunReport:
    from pipelines.local.runner import LocalRunError, LocalRunner

    s3, sagemaker = _clients(config.region)
    document = json.loads(definition)
    parameters = stage_input(s3, config, document)
    execution_id = f"local-{uuid.uuid4().hex[:12]}"
    root = (workdir or Path(".pipeline-local")).resolve()  # scripts run with the step dir as cwd
    print(f"running {config.pipeline_name} locally (execution {execution_id}, work dir {root / execution_id})")
    runner = LocalRunner(
        document,
        s3=s3,
        sagemaker=sagemaker,
        workdir=root / execution_id,
        pipeline_name=config.pipeline_name,
        execution_id=execution_id,
        report=printer(),
    )
    report = RunReport(config.pipeline_name, execution_id, "Failed", config.candidate,
                       threshold_of(document, parameters), provenance=_provenance(parameters))
    try:
        result = runner.run(parameters)
    except LocalRunError as error:
        report.failure_reason = str(error)
        return report
    report.status, report.failure_reason = result.status, result.failure_reason
    report.registered_arn = str(result.properties.get(abalone.STEP_REGISTER, {}).get("ModelPackageArn", ""))
    report.evaluation = read_evaluation(
        s3, abalone.evaluation_report_uri(config.artifact_bucket, config.pipeline_name, execution_id)
    )
    return report


def write_artifact(directory: Path | None, name: str, document: Any) -> None:
    """Keep a JSON document in the artifacts directory (the CI job's artifact), if there is one."""
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    text = document if isinstance(document, str) else json.dumps(document, indent=2, sort_keys=True)
    (directory / name).write_text(text + "\n")


def _provenance(parameters: Mapping[str, str]) -> dict[str, str]:
    names = (abalone.PARAM_COMMIT, abalone.PARAM_BRANCH, abalone.PARAM_REPOSITORY, abalone.PARAM_PIPELINE_URL,
             abalone.PARAM_MERGE_REQUEST_URL)
    return {name: parameters[name] for name in names if name in parameters}


def registered_arn(sagemaker: Any, execution_arn: str) -> str:
    """The model package the execution's RegisterModel step created ("" when it did not run)."""
    from pipelines.remote import step_statuses

    for step in step_statuses(sagemaker, execution_arn):
        arn = step.get("Metadata", {}).get("RegisterModel", {}).get("Arn")
        if arn:
            return str(arn)
    return ""


def run_remote(
    config: RunConfig,
    definition: str,
    tags: list[dict[str, str]],
    poll_seconds: float,
    artifacts: Path | None = None,
    clients: Any = None,
) -> RunReport:
    from pipelines.remote import RemoteRunError, follow_execution, start_execution, upsert_pipeline

    s3, sagemaker = clients or _clients(config.region)
    write_artifact(artifacts, DEFINITION_FILE, definition)
    document = json.loads(definition)
    parameters = stage_input(s3, config, document)
    threshold = threshold_of(document, parameters)
    try:
        arn = upsert_pipeline(
            sagemaker, config.pipeline_name, definition, config.role_arn, tags, "Abalone model build (GitLab CI)"
        )
        print(f"upserted {arn}")
        execution_arn = start_execution(sagemaker, config.pipeline_name, parameters)
    except RemoteRunError as error:
        return RunReport(config.pipeline_name, "", "Failed", config.candidate, threshold,
                         failure_reason=str(error), provenance=_provenance(parameters))
    record = {"pipeline_arn": arn, "execution_arn": execution_arn, "parameters": parameters}
    write_artifact(artifacts, EXECUTION_FILE, {**record, "status": "Executing"})
    print(f"started {execution_arn}")
    status, reason = follow_execution(
        sagemaker, execution_arn, printer(), poll_seconds=poll_seconds, timeout_seconds=config.timeout_minutes * 60
    )
    write_artifact(artifacts, EXECUTION_FILE, {**record, "status": status, "reason": reason})
    execution_id = execution_arn.rsplit("/", 1)[-1]
    return RunReport(
        config.pipeline_name, execution_id, status, config.candidate, threshold,
        evaluation=read_evaluation(
            s3, abalone.evaluation_report_uri(config.artifact_bucket, config.pipeline_name, execution_id)
        ),
        registered_arn=registered_arn(sagemaker, execution_arn) if status == "Succeeded" else "",
        failure_reason=reason, provenance=_provenance(parameters),
    )


def finish(report: RunReport, report_dir: Path, review: bool) -> int:
    """Write the reports, post the merge request note when asked, end the log; the exit status."""
    write_reports(report_dir, report)
    code = {"Succeeded": 0, "Interrupted": EXIT_INTERRUPTED}.get(report.status, 1)
    if review:
        from pipelines import review as mr_review

        try:
            code = max(code, mr_review.post_from_ci(report_dir, os.environ))
        except Exception as error:  # noqa: BLE001 - the run's own outcome must still end the log
            print(f"review: the merge request note failed: {type(error).__name__}: {error}", file=sys.stderr)
            code = max(code, 1)
    out, err = closing_lines(report)
    for line in out:
        print(line, flush=True)
    sys.stdout.flush()
    for line in err:
        print(line, file=sys.stderr, flush=True)
    return code


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
    parser.add_argument("--report-dir", type=Path, default=DEFAULT_REPORT_DIR,
                        help="where evaluation.json, metrics.txt and run.json go (default ./reports)")
    parser.add_argument("--candidate", action="store_true",
                        help="evaluate a merge request's model without registering it (RegisterModel=false)")
    parser.add_argument("--review", action="store_true",
                        help="post or update the model note on the merge request (MR_NOTE_TOKEN)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args, os.environ)
        definition, tags = build_definition(config)
        if args.local:
            write_artifact(args.artifacts_dir, DEFINITION_FILE, definition)
            report = run_local(config, definition, args.workdir)
        else:
            report = run_remote(config, definition, tags, args.poll_seconds, args.artifacts_dir)
    except ConfigError as error:
        print(f"run-pipeline: {error}", file=sys.stderr)
        return 2
    return finish(report, args.report_dir, args.review)


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
