"""Build step: pick the model package to deploy and write each stage's CloudFormation parameters and tags.

The package is MODEL_PACKAGE_ARN when the pipeline was started with it (the approval trigger does),
otherwise the newest Approved package of the project's group. Anything not Approved, or from another
group, is refused. Output files (the job's artifacts, in the CloudFormation CLI's JSON formats):

    build/model-package.json         the chosen package and the data the staging test needs
    build/<stage>-parameters.json    [{"ParameterKey": .., "ParameterValue": ..}, ...]
    build/<stage>-tags.json          [{"Key": .., "Value": ..}, ...]
    build/<stage>-hosting.json       the stage's Hosting section, parsed and checked (steps/hosting.py)
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError

from steps.common import (
    APPROVED,
    METADATA_TEST_DATA_URI,
    MODEL_PACKAGE_FILE,
    STAGES,
    TEMPLATE_FILE,
    VAR_MODEL_PACKAGE_ARN,
    Project,
    StepError,
    environ,
    parameters_file,
    read_json,
    read_text,
    run_cli,
    tags_file,
    write_json,
)
from steps.hosting import HOSTING_PARAMETERS, Hosting, hosting_file, parse_hosting, parse_rollout

# Container variables that select script mode in SageMaker's framework images: set, they must name
# the entry point and its directory (set but empty, the XGBoost image imports a module named "" and
# fails its /ping health check, so the endpoint never goes InService).
SCRIPT_MODE_VARIABLES = ("SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY")

# Parameters the build step fills in; a stage config file must not set them.
BUILD_PARAMETERS = (
    "SageMakerProjectName",
    "SageMakerProjectId",
    "ResourceSuffix",
    "StageName",
    "ModelPackageArn",
    "ModelExecutionRoleArn",
    "ArtifactBucket",
)


@dataclass(frozen=True)
class ModelPackage:
    """The model package version a pipeline deploys, with what the staging test reads from it."""

    arn: str
    group: str
    version: int
    approval_status: str
    evaluation_s3_uri: str
    test_data_s3_uri: str


def _describe(sm: Any, arn: str) -> dict[str, Any]:
    try:
        return dict(sm.describe_model_package(ModelPackageName=arn))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ValidationException", "ResourceNotFound", "ResourceNotFoundException"):
            raise StepError(
                f"model package {arn} was not found; pass the ARN of an existing version of this "
                "project's model package group as MODEL_PACKAGE_ARN"
            ) from exc
        raise


def latest_approved_arn(sm: Any, group: str) -> str:
    """ARN of the newest Approved package in `group`."""
    try:
        found = sm.list_model_packages(
            ModelPackageGroupName=group,
            ModelApprovalStatus=APPROVED,
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=1,
        )["ModelPackageSummaryList"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            raise StepError(
                f"model package group {group} does not exist; run the model-build pipeline"
            ) from exc
        raise
    if not found:
        raise StepError(
            f"model package group {group} has no Approved model package; approve one in SageMaker Studio "
            "(that starts this pipeline) or run the pipeline with MODEL_PACKAGE_ARN set"
        )
    return str(found[0]["ModelPackageArn"])


def check_serving_containers(arn: str, containers: list[dict[str, Any]]) -> None:
    """Refuse a package whose containers could not pass the endpoint's health check."""
    if not containers:
        raise StepError(f"model package {arn} has no InferenceSpecification containers to deploy")
    for index, container in enumerate(containers):
        environment = container.get("Environment") or {}
        empty = [n for n in SCRIPT_MODE_VARIABLES if n in environment and not str(environment[n]).strip()]
        if empty:
            raise StepError(
                f"model package {arn} container {index} sets {' and '.join(empty)} to an empty value; the "
                "serving image would fail its /ping and the endpoint would never go InService: register the "
                "package again with the model-build pipeline (it names inference.py and /opt/ml/model/code)"
            )


def select_model_package(sm: Any, group: str, requested_arn: str | None) -> ModelPackage:
    """The package to deploy: `requested_arn` if given, else the latest Approved one; checked either way."""
    arn = requested_arn.strip() if requested_arn and requested_arn.strip() else latest_approved_arn(sm, group)
    desc = _describe(sm, arn)
    package_group = desc.get("ModelPackageGroupName")
    if package_group != group:
        raise StepError(
            f"model package {arn} belongs to group {package_group or '(none)'}, not to this project's "
            f"group {group}; deploy a version of {group}"
        )
    status = desc.get("ModelApprovalStatus", "(unknown)")
    if status != APPROVED:
        raise StepError(
            f"model package {arn} is {status}, not {APPROVED}; approve it in SageMaker Studio (or with "
            "`aws sagemaker update-model-package --model-approval-status Approved`) before deploying it"
        )
    check_serving_containers(arn, list(desc.get("InferenceSpecification", {}).get("Containers", [])))
    statistics = desc.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {})
    evaluation_uri = statistics.get("S3Uri", "")
    if not evaluation_uri:
        raise StepError(
            f"model package {arn} has no ModelMetrics.ModelQuality.Statistics (evaluation.json); the staging "
            "test compares against it: register the package with the model-build pipeline"
        )
    test_data_uri = desc.get("CustomerMetadataProperties", {}).get(METADATA_TEST_DATA_URI, "")
    if not test_data_uri:
        raise StepError(
            f"model package {arn} has no CustomerMetadataProperties.{METADATA_TEST_DATA_URI} "
            "(held-out rows) that the staging test needs: register the package with the model-build pipeline"
        )
    return ModelPackage(
        arn=arn,
        group=group,
        version=int(desc.get("ModelPackageVersion", 0)),
        approval_status=status,
        evaluation_s3_uri=evaluation_uri,
        test_data_s3_uri=test_data_uri,
    )


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """Reads CloudFormation YAML; short-form intrinsics (!Ref, !Sub, ...) load as plain values."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_CfnLoader.add_multi_constructor("!", _intrinsic)


def template_parameters(template_text: str) -> dict[str, dict[str, Any]]:
    """The template's Parameters section."""
    doc = yaml.load(template_text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return dict(doc.get("Parameters", {}))


def _as_parameter_value(name: str, value: Any, source: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise StepError(
        f"{source}: parameter {name} must be a string, number or boolean, not {type(value).__name__}"
    )


def resource_suffix(values: Mapping[str, str]) -> str:
    """10 hex digits that change whenever what the stage deploys changes (package, role or settings)."""
    canonical = json.dumps(dict(sorted(values.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def stage_files(
    project: Project,
    package: ModelPackage,
    stage: str,
    config: Mapping[str, Any],
    template_params: Mapping[str, Mapping[str, Any]],
    source: str,
) -> tuple[list[dict[str, str]], list[dict[str, str]], Hosting]:
    """CloudFormation parameters, tags and hosting for one stage: the stage config plus what the build fills
    in."""
    unknown_keys = set(config) - {"Hosting", "Rollout", "Parameters", "Tags"}
    if unknown_keys:
        raise StepError(
            f"{source}: unknown top-level keys {sorted(unknown_keys)}; only Hosting, Rollout, Parameters "
            "and Tags"
        )
    configured = dict(config.get("Parameters", {}))
    reserved = sorted(set(configured) & set(BUILD_PARAMETERS))
    if reserved:
        raise StepError(f"{source}: {', '.join(reserved)} are filled in by the build step; remove them")
    from_hosting = sorted(set(configured) & set(HOSTING_PARAMETERS))
    if from_hosting:
        raise StepError(
            f"{source}: {', '.join(from_hosting)} come from the Hosting section; set them there (see README)"
        )
    hosting = parse_hosting(config.get("Hosting"), configured, stage, project.artifact_bucket, source)
    rollout = parse_rollout(config.get("Rollout"), hosting, stage, source)
    unknown = sorted(set(configured) - set(template_params))
    if unknown:
        raise StepError(
            f"{source}: {', '.join(unknown)} are not parameters of {TEMPLATE_FILE}; "
            f"valid ones: "
            f"{', '.join(sorted(set(template_params) - set(BUILD_PARAMETERS) - set(HOSTING_PARAMETERS)))}"
        )
    values = {name: _as_parameter_value(name, value, source) for name, value in configured.items()}
    values.update(hosting.template_parameters())
    values.update(rollout.template_parameters())
    values.update(
        SageMakerProjectName=project.name,
        SageMakerProjectId=project.id,
        StageName=stage,
        ModelPackageArn=package.arn,
        ModelExecutionRoleArn=project.execution_role_arn,
        ArtifactBucket=project.artifact_bucket,
    )
    values["ResourceSuffix"] = resource_suffix(values)
    missing = sorted(
        name for name, spec in template_params.items() if "Default" not in spec and name not in values
    )
    if missing:
        raise StepError(f"{source}: set {', '.join(missing)} (the template has no default for them)")
    parameters = [{"ParameterKey": key, "ParameterValue": values[key]} for key in sorted(values)]

    tags = {
        str(key): _as_parameter_value(str(key), value, source)
        for key, value in config.get("Tags", {}).items()
    }
    tags.update(project.tags())
    tag_list = [{"Key": key, "Value": tags[key]} for key in sorted(tags)]
    return parameters, tag_list, hosting


def build(
    sm: Any, project: Project, requested_arn: str | None, repo_dir: Path, out_dir: Path
) -> ModelPackage:
    """Select and check the package, then write model-package.json and every stage's files into out_dir."""
    package = select_model_package(sm, project.model_package_group, requested_arn)
    template_params = template_parameters(read_text(repo_dir / TEMPLATE_FILE))
    outputs: dict[str, Any] = {}
    for stage in STAGES:
        config_path = repo_dir / f"{stage}-config.json"
        config = read_json(config_path)
        if not isinstance(config, dict):
            raise StepError(f"{config_path.name}: expected a JSON object with Parameters and Tags")
        outputs[stage] = stage_files(project, package, stage, config, template_params, config_path.name)
    write_json(out_dir / MODEL_PACKAGE_FILE, asdict(package))
    for stage, (parameters, tags, hosting) in outputs.items():
        write_json(out_dir / parameters_file(stage), parameters)
        write_json(out_dir / tags_file(stage), tags)
        write_json(out_dir / hosting_file(stage), hosting.to_json())
    return package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build"), help="output directory (default: build)")
    parser.add_argument(
        "--repo-dir", type=Path, default=Path(), help="directory holding the template and configs"
    )
    parser.add_argument(
        "--model-package-arn",
        help=f"package to deploy (default: ${VAR_MODEL_PACKAGE_ARN}, else the latest Approved of the group)",
    )
    args = parser.parse_args(argv)

    def body() -> int:
        env = environ()
        project = Project.from_env(env)
        requested = args.model_package_arn or env.get(VAR_MODEL_PACKAGE_ARN) or None
        sm = boto3.client("sagemaker", region_name=project.region)
        package = build(sm, project, requested, args.repo_dir, args.out)
        how = "requested" if requested else "latest Approved"
        print(f"Deploying {package.arn} (version {package.version}, {how}) of group {package.group}")
        print(f"Wrote {args.out}/{MODEL_PACKAGE_FILE} and the parameter/tag files of: {', '.join(STAGES)}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
