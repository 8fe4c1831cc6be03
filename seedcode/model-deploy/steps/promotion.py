"""Production gate: promote only the package staging passed with, still Approved, and the newest approval.

A production job may be played days after its pipeline ran. By then a newer version may have been
approved (its own pipeline carries it), or this one rejected: playing the old job would put into production
a model that is not the one the registry says is current. The deploy step runs this check first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.build import latest_approved_arn
from steps.common import APPROVED, STAGING_PASSED_FILE, VAR_PROMOTE_OLDER, StepError, parameters_file


@dataclass(frozen=True)
class Promotion:
    """The package the production job promotes and the facts it was checked against."""

    model_package_arn: str
    newest_approved_arn: str
    older_allowed: bool


def _version(arn: str) -> str:
    return f"v{arn.rsplit('/', 1)[-1]}"


def promoted_arn(build_dir: Path, parameters: list[Mapping[str, str]]) -> str:
    arn = next((p["ParameterValue"] for p in parameters if p["ParameterKey"] == "ModelPackageArn"), "")
    if not arn:
        raise StepError(
            f"{build_dir / parameters_file('prod')} names no ModelPackageArn; re-run the build job"
        )
    return arn


def check_promotion(
    sm: Any, group: str, arn: str, staging_passed: Mapping[str, Any] | None, older_allowed: bool
) -> Promotion:
    """Raise StepError unless `arn` passed staging in this pipeline, is Approved and is the newest one."""
    if not staging_passed:
        raise StepError(
            f"{_version(arn)} ({arn}) has no passed staging test in this pipeline ({STAGING_PASSED_FILE} is "
            "missing): production takes only what staging passed; run the whole pipeline again"
        )
    tested = str(staging_passed.get("model_package_arn", ""))
    if tested != arn:
        raise StepError(
            f"this pipeline promotes {arn}, but its staging test passed with {tested or '(nothing)'}; "
            "production takes only what staging passed: run the pipeline again"
        )
    status = sm.describe_model_package(ModelPackageName=arn).get("ModelApprovalStatus", "(unknown)")
    if status != APPROVED:
        raise StepError(
            f"{_version(arn)} ({arn}) is {status} now, no longer {APPROVED}: this pipeline is stale and "
            "stops; production keeps what it serves"
        )
    newest = latest_approved_arn(sm, group)
    if newest != arn and not older_allowed:
        raise StepError(
            f"{_version(arn)} is not the newest approval: {_version(newest)} ({newest}) was approved after "
            f"it, and its own pipeline promotes it; this pipeline is stale and stops. To roll back to "
            f"{_version(arn)} on purpose, reject the newer versions, or run the pipeline with "
            f"MODEL_PACKAGE_ARN={arn} and {VAR_PROMOTE_OLDER}=true"
        )
    return Promotion(arn, newest, older_allowed)


def older_allowed(env: Mapping[str, str]) -> bool:
    raw = env.get(VAR_PROMOTE_OLDER, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise StepError(f"CI/CD variable {VAR_PROMOTE_OLDER}={raw!r} must be true or false")
    return raw == "true"
