"""The lifecycle's steps, each one product action on the sandbox with what it showed (typed results)."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_common import contract

from .events import Emission
from .lab import BUILD_REPO, DEPLOY_REPO, DemoError, Lab, Project
from .report import Report
from .services import new_project_id

# model-deploy's jobs: one staging job deploys and tests under the staging lock, then the production gate.
STAGING_JOB, PROD_JOB = contract.DEPLOY_JOB_STAGING, contract.DEPLOY_JOB_PROD
STAGING_JOBS = (contract.DEPLOY_JOB_BUILD, STAGING_JOB)
STAGING_REPORT = contract.STAGING_TEST_REPORT
PREDICTION_ROWS = 20


# --- what each step showed ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrapped:
    oidc_provider_arn: str
    bundle_bucket: str


@dataclass(frozen=True)
class Build:
    """The build pipeline that ran and the (pending) version it registered, with its evaluation."""

    pipeline: dict[str, Any]
    package: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def package_arn(self) -> str:
        return str(self.package["ModelPackageArn"])


@dataclass(frozen=True)
class DeployPipeline:
    """A deploy pipeline the trigger started for an approval, settled; its variables and staging report."""

    pipeline: dict[str, Any]
    variables: dict[str, str]
    junit: Path | None

    @property
    def pipeline_id(self) -> int:
        return int(self.pipeline["id"])


@dataclass(frozen=True)
class Staged(DeployPipeline):
    """Staging passed; production waits at its manual gate."""

    staging: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StagingFailed(DeployPipeline):
    """The staging test failed; what it reported and what production's job did."""

    failed_checks: tuple[str, ...] = ()
    log: str = ""
    prod_status: str = ""
    prod_refusal: str = ""


@dataclass(frozen=True)
class Refused:
    """A production job whose promotion gate refused, with its reason."""

    pipeline: dict[str, Any]
    log: str
    reason: str


@dataclass(frozen=True)
class Rejected:
    emission: Emission
    rollback_pipeline_id: int | None


@dataclass(frozen=True)
class Production:
    """Production after its job: the endpoint (or for batch the transform job) it serves from."""

    pipeline: dict[str, Any]
    prod: dict[str, Any]


@dataclass(frozen=True)
class Prediction:
    predictions: list[float]
    truth: list[float]
    mae: float
    records: list[list[str]]
    refused: dict[str, Any]


# --- the steps ------------------------------------------------------------------------------------------


def step_up(lab: Lab, report: Report) -> Bootstrapped:
    data = lab.seed_public_data()
    report.say(f"Abalone data at {data} (the seed pipeline's default input)")
    oidc = lab.create_oidc_provider()
    report.say(f"IAM OIDC provider for the GitLab stand-in: {oidc}")
    output = lab.bootstrap(oidc)
    for line in output.splitlines():
        if line.startswith(("[", "Done")):
            report.say(f"init.sh {line.strip()}")
    return Bootstrapped(oidc, lab.bundle_bucket())


def step_create_project(lab: Lab, report: Report, name: str, policy: str, auth_mode: str) -> Project:
    project = lab.create_project(name, new_project_id(), policy, auth_mode)
    report.say(f"stack {project.stack_name}: CREATE_COMPLETE; model package group {project.package_group}")
    return project


def show_repositories(lab: Lab, report: Report, project: Project) -> dict[str, Any]:
    repos = lab.repositories(project)
    for label, repo in repos.items():
        report.say(f"{label}: {repo['path']} (id {repo['id']}) {repo['clone_url']}")
        report.say(f"  files: {', '.join(repo['files'])}")
        shown = ", ".join(f"{k}={v['value']}" for k, v in sorted(repo["variables"].items()))
        report.say(f"  CI variables: {shown}")
    return repos


def step_build(
    lab: Lab, report: Report, project: Project, newer_than: int = 0, source: str | None = None
) -> Build:
    """Wait for the build repository's pipeline; the registered (pending) package."""
    before = {p["ModelPackageArn"] for p in lab.packages(project)}
    pipeline = lab.wait_for_pipeline(
        project.build_project_id, BUILD_REPO, newer_than=newer_than, source=source, timeout=900
    )
    if pipeline["status"] != "success":
        raise DemoError(lab.failed_job_reason(project.build_project_id, pipeline))
    new = [p for p in lab.packages(project) if p["ModelPackageArn"] not in before]
    if not new:
        raise DemoError(f"the build pipeline succeeded but registered nothing in {project.package_group}")
    package = new[-1]
    metrics = lab.metrics(package)["regression_metrics"]
    report.say(f"registered {package['ModelPackageArn']} ({package['ModelApprovalStatus']})")
    report.say("metrics: " + ", ".join(f"{k}={v['value']:.3f}" for k, v in metrics.items()))
    return Build(pipeline, package, metrics)


def step_pending_event(lab: Lab, report: Report, project: Project, package_arn: str) -> None:
    """SageMaker also emits the event for PendingManualApproval: nothing may deploy."""
    before = [p["id"] for p in lab.pipelines(project.deploy_project_id)]
    emission = lab.emit(package_arn)
    for delivery in emission.deliveries:
        if delivery.invocation is not None:
            result = delivery.invocation.raise_for_error()
            report.say(f"trigger answered: {result}")
    time.sleep(0.5)
    after = [p["id"] for p in lab.pipelines(project.deploy_project_id)]
    if after != before:
        raise DemoError("a PendingManualApproval event started a deploy pipeline; only Approved may")
    report.say(f"pending event matched rules {list(emission.matched_rules) or 'none'}; no deploy pipeline")


def _approved_pipeline(lab: Lab, report: Report, project: Project, package_arn: str) -> DeployPipeline:
    """Approve the package; the deploy pipeline the trigger starts, settled, with its variables checked."""
    newest = max([p["id"] for p in lab.pipelines(project.deploy_project_id)], default=0)
    emission = lab.set_status(package_arn, contract.APPROVED)
    if not emission.deliveries:
        raise DemoError("no EventBridge rule delivered the Approved event to a Lambda")
    for delivery in emission.deliveries:
        report.say(
            f"rule {delivery.rule} -> {delivery.target_arn.rsplit(':', 1)[-1]}: "
            f"{delivery.invocation.payload if delivery.invocation else delivery.not_delivered}"
        )
    pipeline = lab.wait_for_pipeline(
        project.deploy_project_id, DEPLOY_REPO, newer_than=newest, source="trigger", timeout=600
    )
    variables = lab.pipeline_variables(project.deploy_project_id, pipeline["id"])
    if variables.get(contract.PIPELINE_VAR_MODEL_PACKAGE_ARN) != package_arn:
        raise DemoError(
            f"deploy pipeline #{pipeline['id']} got MODEL_PACKAGE_ARN="
            f"{variables.get(contract.PIPELINE_VAR_MODEL_PACKAGE_ARN)!r}, not {package_arn}"
        )
    junit = lab.artifact(pipeline["id"], STAGING_JOB, STAGING_REPORT)
    if junit is not None:
        report.say(f"staging test report: {junit}")
    return DeployPipeline(pipeline, variables, junit)


def step_hosting(lab: Lab, report: Report, project: Project, hosting: str) -> None:
    if hosting == "realtime":
        report.say("realtime: model-deploy's stage config files as the seed ships them")
        return
    lab.set_hosting(project, hosting)


def step_approve(
    lab: Lab, report: Report, project: Project, package_arn: str, hosting: str = "realtime"
) -> Staged:
    found = _approved_pipeline(lab, report, project, package_arn)
    pipeline = found.pipeline
    jobs = pipeline["jobs"]
    if any(jobs.get(name, {}).get("status") != "success" for name in STAGING_JOBS):
        raise DemoError(lab.failed_job_reason(project.deploy_project_id, pipeline))
    if jobs.get(PROD_JOB, {}).get("status") != "manual":
        raise DemoError(f"{PROD_JOB} should wait as a manual job, it is {jobs.get(PROD_JOB)}")
    staging = lab.endpoint(project, "staging")
    if hosting == "batch":
        if staging is not None:
            raise DemoError(f"a batch stage has no endpoint, yet staging has {staging['name']}")
        staging = {"name": "(batch: transform jobs, no endpoint)", "status": "n/a", "config": ""}
        report.say(
            "staging (batch): the model only; the staging test ran a transform job on the held-out rows"
        )
    elif staging is None or staging["status"] != "InService":
        raise DemoError(f"staging endpoint not InService: {staging}")
    else:
        report.say(f"staging endpoint {staging['name']} InService (config {staging['config']})")
    report.say(f"{PROD_JOB} waits for a person (manual job)")
    return Staged(found.pipeline, found.variables, found.junit, staging)


def step_staging_fails(lab: Lab, report: Report, project: Project, package_arn: str) -> StagingFailed:
    """Approve a package the staging test must fail (e.g. `register-biased`): production never waits."""
    found = _approved_pipeline(lab, report, project, package_arn)
    pipeline = found.pipeline
    jobs = pipeline["jobs"]
    if jobs.get(STAGING_JOB, {}).get("status") != "failed":
        raise DemoError(f"the staging test should have failed {package_arn}; job {STAGING_JOB}: {jobs}")
    log = lab.job_log(project.deploy_project_id, jobs[STAGING_JOB]["id"])
    failed = [line.strip() for line in log.splitlines() if line.strip().startswith("FAIL ")]
    for line in failed:
        report.say(line)
    refusal = ""
    prod_status = jobs.get(PROD_JOB, {}).get("status")
    if prod_status == "manual":
        # GitLab skips a job whose `needs` failed; the stand-in (gitlab-ci-local) leaves it playable. Play it:
        # its promotion gate must refuse, as nothing passed staging in this pipeline.
        played = lab.play(project.deploy_project_id, pipeline["id"], PROD_JOB, DEPLOY_REPO)
        prod_status = played["jobs"][PROD_JOB]["status"]
        prod_log = lab.job_log(project.deploy_project_id, played["jobs"][PROD_JOB]["id"])
        refusal = next((line for line in prod_log.splitlines() if line.startswith("ERROR:")), "")
        report.say(f"{PROD_JOB} of #{pipeline['id']} played anyway: {prod_status}: {refusal}")
    if prod_status in ("success", "running"):
        raise DemoError(f"{PROD_JOB} is {prod_status} after a failed staging test")
    report.say(f"pipeline #{pipeline['id']} stopped at {STAGING_JOB}; {PROD_JOB}: {prod_status}")
    return StagingFailed(
        found.pipeline, found.variables, found.junit, tuple(failed), log, str(prod_status), refusal
    )


def step_stale_prod_refused(lab: Lab, report: Report, project: Project, pipeline_id: int) -> Refused:
    """Play an older pipeline's production job after a newer approval: its promotion gate must refuse."""
    pipeline = lab.play(project.deploy_project_id, pipeline_id, PROD_JOB, DEPLOY_REPO)
    job = pipeline["jobs"][PROD_JOB]
    if job["status"] != "failed":
        raise DemoError(f"the stale {PROD_JOB} of pipeline #{pipeline_id} ended {job['status']}, not failed")
    log = lab.job_log(project.deploy_project_id, job["id"])
    reason = next((line for line in log.splitlines() if line.startswith("ERROR:")), "")
    report.say(f"stale {PROD_JOB} of #{pipeline_id} refused: {reason}")
    return Refused(pipeline, log, reason)


def step_reject(lab: Lab, report: Report, project: Project, package_arn: str) -> Rejected:
    before = [p["id"] for p in lab.pipelines(project.deploy_project_id)]
    emission = lab.set_status(package_arn, contract.REJECTED)
    time.sleep(0.5)
    started = [p["id"] for p in lab.pipelines(project.deploy_project_id) if p["id"] not in before]
    if not started:
        report.say(
            f"rejected {package_arn}: rules matched {list(emission.matched_rules) or 'none'}, "
            "not live in production, nothing deployed"
        )
        return Rejected(emission, None)
    # Rejecting the version production serves rolls back to the previous Approved one.
    variables = lab.pipeline_variables(project.deploy_project_id, started[0])
    reason = variables.get(contract.PIPELINE_VAR_DEPLOY_REASON, "")
    if len(started) != 1 or not reason.startswith("rollback:"):
        raise DemoError(f"rejecting {package_arn} started {len(started)} pipeline(s) that are no rollback")
    report.say(f"rejected {package_arn}: {reason} (pipeline {started[0]}, production gate as usual)")
    return Rejected(emission, started[0])


def step_prod(
    lab: Lab,
    report: Report,
    project: Project,
    pipeline_id: int,
    job: str = PROD_JOB,
    hosting: str = "realtime",
) -> Production:
    pipeline = lab.play(project.deploy_project_id, pipeline_id, job, DEPLOY_REPO)
    if pipeline["jobs"][job]["status"] != "success":
        raise DemoError(lab.failed_job_reason(project.deploy_project_id, pipeline))
    if hosting == "batch":
        result = lab.artifact(pipeline_id, job, "prod-deploy.json")
        if result is None:
            raise DemoError(f"{job} of pipeline #{pipeline_id} left no prod-deploy.json")
        deployed = json.loads(result.read_text())
        report.say(f"production transform job {deployed['transform_job']} -> {deployed['transform_output']}")
        return Production(pipeline, {"name": deployed["transform_job"], **deployed})
    prod = lab.endpoint(project, "prod")
    if prod is None or prod["status"] != "InService":
        raise DemoError(f"production endpoint not InService: {prod}")
    report.say(f"production endpoint {prod['name']} InService")
    return Production(pipeline, prod)


def step_predict(
    lab: Lab,
    report: Report,
    project: Project,
    endpoint: str,
    package: dict[str, Any],
    hosting: str = "realtime",
    prod: dict[str, Any] | None = None,
) -> Prediction:
    """Raw Abalone records (as any client sends them) in, rings out; a mis-shaped record must be refused.

    async: queued through S3; batch: the production transform's output over the records put before it."""
    rows = lab.test_rows(package, PREDICTION_ROWS)
    truth = [float(r[0]) for r in rows]
    records = [r[1:] for r in rows]
    if hosting == "batch":
        output = f"{(prod or {})['transform_output'].rstrip('/')}/held-out.csv.out"
        predictions = [float(v) for v in lab.read_s3(output).decode().split()]
        endpoint = f"transform job {(prod or {})['transform_job']} ({output})"
    elif hosting == "async":
        predictions = lab.predict_async(project, endpoint, records)
        endpoint = f"InvokeEndpointAsync {endpoint}"
    else:
        predictions = lab.predict(endpoint, records)
    if len(predictions) != len(rows):
        raise DemoError(f"{endpoint} answered {len(predictions)} predictions for {len(rows)} rows")
    mae = statistics.fmean(abs(p - t) for p, t in zip(predictions, truth, strict=True))
    report.say(f"raw record sent: {','.join(records[0])}")
    for p, t in list(zip(predictions, truth, strict=True))[:3]:
        report.say(f"rings predicted {p:5.2f}, true {t:4.0f}")
    report.say(f"{len(rows)} held-out abalones via {endpoint}: mean absolute error {mae:.2f} rings")
    if hosting in ("batch", "async"):
        return Prediction(predictions, truth, mae, records, {})
    refused = lab.refusal(endpoint, records[0][:-1])
    if not isinstance(refused["status"], int) or not 400 <= refused["status"] < 500:
        raise DemoError(f"{endpoint} did not refuse a record with a missing value with a 4xx: {refused}")
    report.say(f"a record with a value missing is refused: {refused['code']} ({refused['status']})")
    return Prediction(predictions, truth, mae, records, refused)
