"""`make demo`: the bundle's whole lifecycle on a local sandbox, with the real product code at every step.

    python -m scripts.sandbox.demo                 # everything, fresh state, cleans up (default)
    python -m scripts.sandbox.demo --hosting async # the same with staging and production hosted async
                                                   # (realtime, the default; serverless; async; batch)
    python -m scripts.sandbox.demo up              # start the sandbox in the background and bootstrap
    python -m scripts.sandbox.demo create-project  # project stack -> seeded repos -> first model build
    python -m scripts.sandbox.demo approve|reject  # the newest pending model package
    python -m scripts.sandbox.demo register-biased [--shift 1]  # a model its staging test must fail
    python -m scripts.sandbox.demo run-job deploy-prod [--pipeline N]
    python -m scripts.sandbox.demo status          # clone line, MRs, versions -> commit -> environments
    python -m scripts.sandbox.demo down [--keep]   # always cleans: also after --keep or a crash

Options go before or after the sub-command.

What is real and what stands in for what is listed in each module's docstring (services, lab and the
stand-ins they use). State lives in `.sandbox/` (state.json, project.json, logs/, gitlab/, lambda/).
The last line of a full run is `demo: OK stages=<passed>/<total> seconds=<s> test_mse=<mse>` or
`demo: FAILED at <stage>: <reason>` (exit status 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_common import contract

from scripts.gitlab_standin.runner import kill_leftover_runs
from scripts.iam.audit import Audit

from .exceptions import SandboxError
from .lab import BUILD_REPO, DEPLOY_REPO, HOSTING_MODES, DemoError, Lab, Project
from .services import REPO_ROOT, Services, State, new_project_id

DEFAULT_ROOT = REPO_ROOT / ".sandbox"
DEFAULT_PROJECT = "abalone-demo"
# model-deploy's jobs: one staging job deploys and tests under the staging lock, then the production gate.
STAGING_JOB, PROD_JOB = "staging", "deploy-prod"
STAGING_JOBS = ("build", STAGING_JOB)
STAGING_REPORT = "staging-test-report.xml"
PREDICTION_ROWS = 20


# --- prerequisites ---------------------------------------------------------------------------------

PREREQUISITES = {
    "git": "apt-get install git",
    "rsync": "apt-get install rsync (gitlab-ci-local copies job directories with it)",
    "node": "apt-get install nodejs (Node 20; gitlab-ci-local 4.73.0 runs on it)",
    "npm": "apt-get install npm",
}


def missing_prerequisites() -> list[str]:
    problems = [f"{tool} is missing: {how}" for tool, how in PREREQUISITES.items() if not shutil.which(tool)]
    if not (REPO_ROOT / "node_modules" / ".bin" / "gitlab-ci-local").exists():
        problems.append("gitlab-ci-local is missing: run `make venv` (npm install pins 4.73.0)")
    if not (REPO_ROOT / ".venv" / "bin" / "python3").exists():
        problems.append("the Python environment .venv is missing: run `make venv`")
    return problems


# --- progress and summary --------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    status: str = "not run"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Report:
    """Stage lines with elapsed time while running; the summary at the end."""

    out: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)
    stages: list[Stage] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    failure: tuple[str, str] | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.out(f"[{self.elapsed():6.1f}s]   {line}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Stage]:
        stage = Stage(name)
        self.stages.append(stage)
        self.out(f"[{self.elapsed():6.1f}s] == {name}")
        t0 = time.monotonic()
        try:
            yield stage
        except BaseException as exc:
            stage.status, stage.seconds = "FAILED", time.monotonic() - t0
            reason = _reason(exc)
            stage.detail = reason
            self.failure = (name, reason)
            self.out(f"[{self.elapsed():6.1f}s] !! {name} FAILED after {stage.seconds:.1f}s: {reason}")
            raise
        stage.status, stage.seconds = "ok", time.monotonic() - t0
        self.out(f"[{self.elapsed():6.1f}s] ok {name} ({stage.seconds:.1f}s)")

    def summary(self, total_planned: int) -> str:
        lines = ["", "Summary", "-------"]
        for stage in self.stages:
            lines.append(
                f"  {stage.status:7} {stage.seconds:6.1f}s  {stage.name}"
                + (f"  ({stage.detail})" if stage.detail and stage.status == "ok" else "")
            )
        for key, value in self.facts.items():
            if key == "test_mse":
                continue
            lines.append(f"  {key}: {value}")
        lines.append(f"  total wall time: {self.elapsed():.1f}s")
        passed = sum(1 for s in self.stages if s.status == "ok")
        if self.failure is None:
            mse = self.facts.get("test_mse")
            mse_text = f"{mse:.2f}" if isinstance(mse, float) else "n/a"
            lines.append(
                f"demo: OK stages={passed}/{total_planned} seconds={self.elapsed():.1f} test_mse={mse_text}"
            )
        else:
            lines.append(f"demo: FAILED at {self.failure[0]}: {self.failure[1]}")
        return "\n".join(lines)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    if not isinstance(exc, SandboxError):
        text = f"{type(exc).__name__}: {text}"
    return text[:400]


# --- the lifecycle, step by step -----------------------------------------------------------------------


def step_up(lab: Lab, report: Report) -> dict[str, str]:
    data = lab.seed_public_data()
    report.say(f"Abalone data at {data} (the seed pipeline's default input)")
    oidc = lab.create_oidc_provider()
    report.say(f"IAM OIDC provider for the GitLab stand-in: {oidc}")
    output = lab.bootstrap(oidc)
    for line in output.splitlines():
        if line.startswith(("[", "Done")):
            report.say(f"init.sh {line.strip()}")
    return {"oidc": oidc, "bucket": lab.bundle_bucket()}


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
) -> dict[str, Any]:
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
    return {"pipeline": pipeline, "package": package, "metrics": metrics}


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


def _approved_pipeline(lab: Lab, report: Report, project: Project, package_arn: str) -> dict[str, Any]:
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
    return {"pipeline": pipeline, "variables": variables, "junit": junit}


def step_hosting(lab: Lab, report: Report, project: Project, hosting: str) -> None:
    if hosting == "realtime":
        report.say("realtime: model-deploy's stage config files as the seed ships them")
        return
    lab.set_hosting(project, hosting)


def step_approve(
    lab: Lab, report: Report, project: Project, package_arn: str, hosting: str = "realtime"
) -> dict[str, Any]:
    found = _approved_pipeline(lab, report, project, package_arn)
    pipeline = found["pipeline"]
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
    return {**found, "staging": staging}


def step_staging_fails(lab: Lab, report: Report, project: Project, package_arn: str) -> dict[str, Any]:
    """Approve a package the staging test must fail (e.g. `register-biased`): production never waits."""
    found = _approved_pipeline(lab, report, project, package_arn)
    pipeline = found["pipeline"]
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
    return {**found, "failed_checks": failed, "log": log, "prod_status": prod_status, "prod_refusal": refusal}


def step_stale_prod_refused(lab: Lab, report: Report, project: Project, pipeline_id: int) -> dict[str, Any]:
    """Play an older pipeline's production job after a newer approval: its promotion gate must refuse."""
    pipeline = lab.play(project.deploy_project_id, pipeline_id, PROD_JOB, DEPLOY_REPO)
    job = pipeline["jobs"][PROD_JOB]
    if job["status"] != "failed":
        raise DemoError(f"the stale {PROD_JOB} of pipeline #{pipeline_id} ended {job['status']}, not failed")
    log = lab.job_log(project.deploy_project_id, job["id"])
    reason = next((line for line in log.splitlines() if line.startswith("ERROR:")), "")
    report.say(f"stale {PROD_JOB} of #{pipeline_id} refused: {reason}")
    return {"pipeline": pipeline, "log": log, "reason": reason}


def step_reject(lab: Lab, report: Report, project: Project, package_arn: str) -> dict[str, Any]:
    before = [p["id"] for p in lab.pipelines(project.deploy_project_id)]
    emission = lab.set_status(package_arn, contract.REJECTED)
    time.sleep(0.5)
    started = [p["id"] for p in lab.pipelines(project.deploy_project_id) if p["id"] not in before]
    if not started:
        report.say(
            f"rejected {package_arn}: rules matched {list(emission.matched_rules) or 'none'}, "
            "not live in production, nothing deployed"
        )
        return {"emission": emission, "rollback": None}
    # Rejecting the version production serves rolls back to the previous Approved one.
    variables = lab.pipeline_variables(project.deploy_project_id, started[0])
    reason = variables.get(contract.PIPELINE_VAR_DEPLOY_REASON, "")
    if len(started) != 1 or not reason.startswith("rollback:"):
        raise DemoError(f"rejecting {package_arn} started {len(started)} pipeline(s) that are no rollback")
    report.say(f"rejected {package_arn}: {reason} (pipeline {started[0]}, production gate as usual)")
    return {"emission": emission, "rollback": started[0]}


def step_prod(
    lab: Lab,
    report: Report,
    project: Project,
    pipeline_id: int,
    job: str = PROD_JOB,
    hosting: str = "realtime",
) -> dict[str, Any]:
    pipeline = lab.play(project.deploy_project_id, pipeline_id, job, DEPLOY_REPO)
    if pipeline["jobs"][job]["status"] != "success":
        raise DemoError(lab.failed_job_reason(project.deploy_project_id, pipeline))
    if hosting == "batch":
        result = lab.artifact(pipeline_id, job, "prod-deploy.json")
        if result is None:
            raise DemoError(f"{job} of pipeline #{pipeline_id} left no prod-deploy.json")
        deployed = json.loads(result.read_text())
        report.say(f"production transform job {deployed['transform_job']} -> {deployed['transform_output']}")
        return {"pipeline": pipeline, "prod": {"name": deployed["transform_job"], **deployed}}
    prod = lab.endpoint(project, "prod")
    if prod is None or prod["status"] != "InService":
        raise DemoError(f"production endpoint not InService: {prod}")
    report.say(f"production endpoint {prod['name']} InService")
    return {"pipeline": pipeline, "prod": prod}


def step_predict(
    lab: Lab,
    report: Report,
    project: Project,
    endpoint: str,
    package: dict[str, Any],
    hosting: str = "realtime",
    prod: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
        return {"predictions": predictions, "truth": truth, "mae": mae, "records": records, "refused": {}}
    refused = lab.refusal(endpoint, records[0][:-1])
    if not isinstance(refused["status"], int) or not 400 <= refused["status"] < 500:
        raise DemoError(f"{endpoint} did not refuse a record with a missing value with a 4xx: {refused}")
    report.say(f"a record with a value missing is refused: {refused['code']} ({refused['status']})")
    return {"predictions": predictions, "truth": truth, "mae": mae, "records": records, "refused": refused}


# --- sandbox lifecycle ------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_state(root: Path) -> State:
    if not (root / "state.json").exists():
        raise DemoError(
            f"no sandbox at {root}: run `make demo ARGS=up` (or `python -m scripts.sandbox.demo up`)"
        )
    state = State.load(root)
    if not _alive(state.pid):
        raise DemoError(
            f"the sandbox server (pid {state.pid}) is not running (a finished `--keep` run or a crash): "
            "run `demo down` to clean up, then `demo up`"
        )
    return state


def fresh_root(root: Path) -> None:
    if (root / "state.json").exists():
        old = State.load(root)
        if old.pid != os.getpid() and _alive(old.pid):
            raise DemoError(f"a sandbox is already up at {root} (pid {old.pid}): run `demo down` first")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)


def serve(root: Path) -> int:
    """The detached server process of `demo up`: hosts the services until SIGTERM."""
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    services = Services(root)
    try:
        (root / "ready").write_text(str(os.getpid()))
        while not stop:
            time.sleep(0.2)
    finally:
        services.stop()
        with contextlib.suppress(FileNotFoundError):
            (root / "ready").unlink()
    return 0


def start_detached(root: Path, timeout: float = 60) -> State:
    (root / "logs").mkdir(parents=True, exist_ok=True)
    log = root / "logs" / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "scripts.sandbox.demo", "--root", str(root), "serve"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not (root / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            raise DemoError(f"the sandbox server did not start: see {log}")
        time.sleep(0.2)
    return State.load(root)


def stop_detached(state: State, timeout: float = 20) -> None:
    if state.pid == os.getpid() or not _alive(state.pid):
        return
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)


def print_access(state: State, out: Callable[[str], None]) -> None:
    out("Poke at the sandbox while it is up:")
    out("  git:                the clone lines `demo status` prints (CA bundle with the sandbox CA:")
    out(f"                      {state.git_ca_bundle})")
    out(
        f"  AWS (moto):         export AWS_ENDPOINT_URL={state.moto_url} AWS_DEFAULT_REGION={state.region} "
        "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    )
    out(f"  GitLab API:         {state.gitlab_url}/api/v4  (token in {state.token_file}, CA {state.ca_file})")
    out(
        f"    python -c \"import gitlab; gl = gitlab.Gitlab('{state.gitlab_url}', "
        f"private_token=open('{state.token_file}').read().strip(), ssl_verify='{state.ca_file}'); "
        'print([p.path_with_namespace for p in gl.projects.list()])"'
    )
    out(f"  sagemaker-runtime:  AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={state.inference_url}")
    root = Path(state.root)
    out(f"  logs:               {root / 'logs'}, Lambda logs {root / 'lambda' / 'logs'}")


# --- the full run ----------------------------------------------------------------------------------------

FULL_STAGES = (
    "prerequisites",
    "sandbox up",
    "bootstrap (init.sh)",
    "create project",
    "seeded repositories",
    "hosting mode",
    "model build pipeline",
    "pending event ignored",
    "approve -> staging",
    "production (manual job)",
    "prediction from production",
    "delete project",
    "IAM check",
)


EXTRA_STAGE = "extra scenarios"
# model-deploy's GitLab environments and the stage names of its registry tags (deployed-to:<stage>)
ENVIRONMENT_STAGES = {"staging": "staging", "production": "prod"}


@dataclass
class Run:
    """Results of the full lifecycle, for the summary and the end-to-end tests."""

    report: Report
    state: State | None = None
    project: Project | None = None
    repos: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] = field(default_factory=dict)
    prod: dict[str, Any] = field(default_factory=dict)
    prediction: dict[str, Any] = field(default_factory=dict)
    deletion: dict[str, str] = field(default_factory=dict)
    iam: Audit | None = None


def lifecycle(
    run: Run,
    root: Path,
    name: str,
    policy: str,
    auth_mode: str,
    extra: Callable[[Run, Lab], None] | None = None,
    hosting: str = "realtime",
) -> Run:
    """Every stage after "sandbox up" (services already running and described by state.json)."""
    report = run.report
    state = State.load(root)
    run.state = state
    lab = Lab(state, report.say)
    with report.stage("bootstrap (init.sh)"):
        step_up(lab, report)
    with report.stage("create project"):
        run.project = step_create_project(lab, report, name, policy, auth_mode)
    project = run.project
    with report.stage("seeded repositories"):
        run.repos = show_repositories(lab, report, project)
    with report.stage("hosting mode") as stage:
        step_hosting(lab, report, project, hosting)
        report.facts["hosting"] = hosting
        stage.detail = hosting
    with report.stage("model build pipeline") as stage:
        run.build = step_build(lab, report, project)
        metrics = run.build["metrics"]
        report.facts["test_mse"] = float(metrics["mse"]["value"])
        report.facts["model metrics (evaluation.json)"] = ", ".join(
            f"{k}={v['value']:.3f}" for k, v in metrics.items()
        )
        report.facts["model package"] = run.build["package"]["ModelPackageArn"]
        stage.detail = f"test MSE {metrics['mse']['value']:.2f}"
    package_arn = run.build["package"]["ModelPackageArn"]
    with report.stage("pending event ignored"):
        step_pending_event(lab, report, project, package_arn)
    with report.stage("approve -> staging"):
        run.deploy = step_approve(lab, report, project, package_arn, hosting)
        report.facts["staging endpoint"] = run.deploy["staging"]["name"]
    with report.stage("production (manual job)"):
        if hosting == "batch":
            batch_input = lab.put_batch_input(project, run.build["package"], PREDICTION_ROWS)
            report.say(f"records for production's transform: {batch_input}")
        run.prod = step_prod(lab, report, project, run.deploy["pipeline"]["id"], hosting=hosting)
        report.facts["production endpoint"] = run.prod["prod"]["name"]
    with report.stage("prediction from production") as stage:
        run.prediction = step_predict(
            lab, report, project, run.prod["prod"]["name"], run.build["package"], hosting, run.prod["prod"]
        )
        stage.detail = f"MAE {run.prediction['mae']:.2f} rings"
    report.facts["logs"] = (
        f"{root / 'logs'} (init.sh, CI jobs in ci/, inference server; Lambda logs {root / 'lambda/logs'})"
    )
    if extra is not None:
        with report.stage(EXTRA_STAGE):
            extra(run, lab)
    with report.stage("delete project") as stage:
        deletion, run.deletion = lab.delete_project(project)
        stage.detail = f"policy {policy}: " + ", ".join(f"{k} {v}" for k, v in run.deletion.items())
        if deletion.stack_error:
            report.say(f"note: {deletion.stack_error}")
    with report.stage("IAM check") as stage:
        run.iam = step_iam_check(lab, report)
        stage.detail = run.iam.summary()
    return run


def step_iam_check(lab: Lab, report: Report) -> Audit:
    """Every AWS call the project's principals made, judged as AWS would evaluate their policies."""
    audit = lab.iam_audit()
    report.say(f"{audit.summary()} (offline evaluation of the templates' policies: scripts/iam)")
    problems = [f"DENIED {v.principal} {v.action} on {v.resource}: {v.reason}" for v in audit.denied]
    problems += [f"UNRESOLVED {u}" for u in audit.unresolved]
    for line in problems[:20]:
        report.say(line)
    if problems:
        raise DemoError(f"{len(problems)} AWS calls would fail or could not be judged on real AWS (above)")
    return audit


def prune_to_logs(root: Path) -> None:
    """Remove the sandbox's state but keep its logs (logs/, lambda/logs/), which the summary points at."""

    def remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.name == "logs":
            continue
        if child.name == "lambda" and child.is_dir():
            for sub in child.iterdir():
                if sub.name != "logs":
                    remove(sub)
            continue
        remove(child)


def full_run(
    root: Path,
    name: str,
    policy: str,
    auth_mode: str,
    keep: bool,
    out: Callable[[str], None] = print,
    extra: Callable[[Run, Lab], None] | None = None,
    run: Run | None = None,
    hosting: str = "realtime",
) -> int:
    """The whole demo. `extra` (tests) runs as one more stage before the project is deleted."""
    report = run.report if run is not None else Report(out)
    run = run or Run(report)
    services: Services | None = None
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (tests): no handler
        signal.signal(signal.SIGTERM, on_term)
    try:
        with report.stage("prerequisites"):
            problems = missing_prerequisites()
            if problems:
                raise DemoError("; ".join(problems))
        with report.stage("sandbox up"):
            fresh_root(root)
            services = Services(root)
            report.say(
                f"moto {services.state.moto_url}, GitLab {services.state.gitlab_url}, "
                f"sagemaker-runtime {services.state.inference_url}"
            )
        lifecycle(run, root, name, policy, auth_mode, extra, hosting)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure ends in the summary line
        if report.failure is None:
            report.failure = ("demo", _reason(exc))
    finally:
        if services is not None:
            services.stop()
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)
        if keep or report.failure is not None:
            report.facts["sandbox state kept"] = (
                f"{root} (logs, repositories, Lambda logs; `demo down` cleans)"
            )
        else:
            prune_to_logs(root)
    report.out(report.summary(len(FULL_STAGES) + (extra is not None)))
    return 0 if report.failure is None else 1


# --- command line ------------------------------------------------------------------------------------------


def _options(with_defaults: bool) -> argparse.ArgumentParser:
    """The options every sub-command takes, before or after it (sub-parsers leave unset ones alone)."""

    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--root", type=Path, default=default(DEFAULT_ROOT), help="sandbox state directory")
    options.add_argument("--project-name", default=default(DEFAULT_PROJECT))
    options.add_argument(
        "--deletion-policy",
        choices=("retain", "archive", "delete"),
        default=default("delete"),
        help="the project's RepositoryDeletionPolicy (default: delete)",
    )
    options.add_argument("--auth-mode", choices=("oidc", "access-keys"), default=default("oidc"))
    options.add_argument(
        "--hosting",
        choices=HOSTING_MODES,
        default=default("realtime"),
        help="how model-deploy hosts staging and production (default: realtime, the seed's files)",
    )
    options.add_argument(
        "--keep",
        action="store_true",
        default=default(False),
        help="keep .sandbox after the run (logs, repos); `down --keep` keeps it too",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo", description=__doc__.split("\n\n")[0] if __doc__ else "", parents=[_options(True)]
    )
    sub = parser.add_subparsers(dest="command")
    common = [_options(False)]
    sub.add_parser(
        "up", parents=common, help="start the sandbox in the background and bootstrap it with init.sh"
    )
    sub.add_parser(
        "create-project", parents=common, help="create the project; wait for the first model build"
    )
    for verb in ("approve", "reject"):
        cmd = sub.add_parser(
            verb, parents=common, help=f"{verb} a model package (default: the newest pending one)"
        )
        cmd.add_argument("--package-arn", default="")
    biased = sub.add_parser(
        "register-biased",
        parents=common,
        help="register a copy of a model predicting --shift rings more (pending): its staging test must fail",
    )
    biased.add_argument("--package-arn", default="", help="default: the newest Approved version")
    biased.add_argument("--shift", type=float, default=1.0)
    run_job = sub.add_parser(
        "run-job",
        parents=common,
        help="play a manual job of a deploy pipeline (default: the newest where it waits), e.g. deploy-prod",
    )
    run_job.add_argument("job")
    run_job.add_argument("--pipeline", type=int, default=0, help="the deploy pipeline's id (default: newest)")
    sub.add_parser(
        "status",
        parents=common,
        help="clone line, pipelines, merge requests, model versions -> commit -> environments",
    )
    sub.add_parser(
        "down",
        parents=common,
        help="delete the project (deletion policy), stop the servers, remove the state",
    )
    sub.add_parser("serve", parents=common, help=argparse.SUPPRESS)
    return parser


def _pending_package(lab: Lab, project: Project, arn: str) -> str:
    if arn:
        return arn
    pending = [p for p in lab.packages(project) if p["ModelApprovalStatus"] == contract.PENDING]
    if not pending:
        raise DemoError(f"no PendingManualApproval package in {project.package_group}: pass --package-arn")
    return str(pending[-1]["ModelPackageArn"])


def status(lab: Lab, out: Callable[[str], None]) -> None:
    state = lab.state
    out(f"sandbox {state.root} (server pid {state.pid})")
    for stack in lab.cfn.describe_stacks()["Stacks"]:
        out(f"  stack {stack['StackName']}: {stack['StackStatus']}")
    with contextlib.suppress(DemoError):
        project = Project.load(Path(state.root))
        gl = lab.gitlab()
        versions = lab.versions(project)
        serving = {stage: f"v{v['version']}" for v in versions for stage in v["environments"]}
        out("  git over HTTPS: the clone lines below work as they are; if your environment sets")
        out("  GIT_SSL_CAINFO (it wins over the clone's own setting), use the sandbox's bundle for pushes:")
        out(f"    export GIT_SSL_CAINFO={state.git_ca_bundle}")
        for label, project_id in (
            (BUILD_REPO, project.build_project_id),
            (DEPLOY_REPO, project.deploy_project_id),
        ):
            repo = gl.projects.get(project_id)
            out(f"  {label} {repo.path_with_namespace}: {repo.web_url}")
            out(f"    clone: {lab.clone_command(repo.http_url_to_repo)}")
            for mr in lab.merge_requests(project_id)[:5]:
                out(
                    f"    merge request !{mr['iid']} {mr['title']!r} ({mr['state']}, "
                    f"{mr['source_branch']} -> {mr['target_branch']}): {mr['web_url']}"
                )
            for pipeline in lab.pipelines(project_id)[:5]:
                out(
                    f"    pipeline #{pipeline['id']} ({pipeline['source']}, {pipeline['ref']}): "
                    f"{pipeline['status']}  {pipeline['web_url']}"
                )
            for env in lab.environments(project_id):
                last = env.get("last_deployment") or {}
                model = serving.get(ENVIRONMENT_STAGES.get(env["name"], env["name"]), "no model version")
                by = f" (last deployed by pipeline #{last['deployable']['pipeline']['id']})" if last else ""
                url = env.get("external_url") or "(no URL yet)"
                out(f"    environment {env['name']} serves {model}: {url}{by}")
        out(f"  model versions ({project.package_group}):")
        for version in versions:
            where = ", ".join(version["environments"]) or "not deployed"
            source = f"commit {version['commit'][:8]}" if version["commit"] else "commit unknown"
            if version["branch"]:
                source += f" ({version['branch']})"
            if version["merge_request_url"]:
                source += f", merge request {version['merge_request_url']}"
            out(f"    v{version['version']} {version['status']}: {source} -> {where}")
            if version["pipeline_url"]:
                out(f"      built by {version['pipeline_url']}")
        for stage in ("staging", "prod"):
            endpoint = lab.endpoint(project, stage)
            if endpoint:
                package = endpoint["model_package"]
                out(f"  {stage} endpoint {endpoint['name']}: {endpoint['status']} ({package})")
    print_access(state, out)


def _manual_pipeline(lab: Lab, project_id: int, job: str, wanted: int) -> int:
    """The deploy pipeline to play `job` in: `wanted`, or the newest where `job` waits (manual)."""
    pipelines = lab.pipelines(project_id)
    if not pipelines:
        raise DemoError("no deploy pipeline yet: approve a model package first")
    if wanted:
        if wanted not in {p["id"] for p in pipelines}:
            known = ", ".join(f"#{p['id']}" for p in pipelines[:10])
            raise DemoError(f"the deploy repository has no pipeline #{wanted} (it has {known})")
        return wanted
    seen = []
    for pipeline in sorted(pipelines, key=lambda p: p["id"], reverse=True):
        jobs = lab.pipeline_jobs(project_id, pipeline["id"])
        if jobs.get(job) == "manual":
            return int(pipeline["id"])
        seen.append(f"#{pipeline['id']} ({pipeline['status']}, {job}: {jobs.get(job, 'absent')})")
    raise DemoError(
        f"no deploy pipeline has {job} waiting to be played: {', '.join(seen[:5])}; "
        "approve a model package for a new one, or pass --pipeline N"
    )


def down(root: Path, keep: bool, report: Report, out: Callable[[str], None]) -> int:
    """Delete the project and stop the servers when they run; remove the state in any case (unless --keep)."""
    if not root.exists():
        out(f"no sandbox at {root}: nothing to clean")
        return 0
    state = State.load(root) if (root / "state.json").exists() else None
    if state is not None and state.pid != os.getpid() and _alive(state.pid):
        lab = Lab(state, report.say)
        with contextlib.suppress(DemoError):
            project = Project.load(root)
            with report.stage("delete project"):
                _, states = lab.delete_project(project)
                report.say(f"policy {project.deletion_policy}: {states}")
        stop_detached(state)
    else:
        killed = kill_leftover_runs(root / "gitlab" / "live-runs.json")
        out(
            "the sandbox server was not running: nothing to delete in it"
            + (f"; stopped leftover CI runs {killed}" if killed else "")
        )
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    out(f"sandbox stopped{'' if keep else f' and {root} removed'}")
    return 0


def command(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    root: Path = args.root.resolve()
    report = Report(out)
    if args.command == "serve":
        return serve(root)
    if args.command == "up":
        problems = missing_prerequisites()
        if problems:
            raise DemoError("; ".join(problems))
        fresh_root(root)
        state = start_detached(root)
        try:
            with report.stage("bootstrap (init.sh)"):
                step_up(Lab(state, report.say), report)
        except BaseException:
            stop_detached(state)
            raise
        print_access(state, out)
        return 0
    if args.command == "down":
        return down(root, args.keep, report, out)
    state = load_state(root)
    lab = Lab(state, report.say)
    if args.command == "create-project":
        with report.stage("create project"):
            project = step_create_project(
                lab, report, args.project_name, args.deletion_policy, args.auth_mode
            )
        with report.stage("seeded repositories"):
            show_repositories(lab, report, project)
        with report.stage("hosting mode"):
            step_hosting(lab, report, project, args.hosting)
        with report.stage("model build pipeline"):
            build = step_build(lab, report, project)
        with report.stage("pending event ignored"):
            step_pending_event(lab, report, project, build["package"]["ModelPackageArn"])
        return 0
    if args.command in ("approve", "reject"):
        project = Project.load(root)
        arn = _pending_package(lab, project, args.package_arn)
        with report.stage(args.command):
            if args.command == "approve":
                step_approve(lab, report, project, arn, project.hosting)
            else:
                step_reject(lab, report, project, arn)
        return 0
    if args.command == "register-biased":
        project = Project.load(root)
        approved = [p for p in lab.packages(project) if p["ModelApprovalStatus"] == contract.APPROVED]
        chosen = args.package_arn or (approved[-1]["ModelPackageArn"] if approved else "")
        if not chosen:
            raise DemoError(f"no Approved package in {project.package_group} to copy: pass --package-arn")
        source = lab.sm.describe_model_package(ModelPackageName=chosen)
        with report.stage("register biased model"):
            arn = lab.register_biased(project, source, args.shift)
        out(f"approve it to watch its staging test fail: demo approve --package-arn {arn}")
        return 0
    if args.command == "run-job":
        project = Project.load(root)
        chosen = _manual_pipeline(lab, project.deploy_project_id, args.job, args.pipeline)
        if project.hosting == "batch":  # the records production's transform reads
            lab.put_batch_input(project, lab.packages(project)[-1], PREDICTION_ROWS)
        with report.stage(f"run-job {args.job} (pipeline #{chosen})"):
            result = step_prod(lab, report, project, chosen, args.job, project.hosting)
        if args.job == "deploy-prod":
            served = result["prod"].get("model_package") or result["prod"].get("model_package_arn")
            package = (
                lab.sm.describe_model_package(ModelPackageName=served)
                if served
                else lab.packages(project)[-1]
            )
            with report.stage("prediction from production"):
                step_predict(
                    lab, report, project, result["prod"]["name"], package, project.hosting, result["prod"]
                )
        return 0
    if args.command == "status":
        status(lab, out)
        return 0
    raise DemoError(f"unknown command {args.command}")


def use_venv_tools() -> None:
    """Put this interpreter's bin first on PATH, as an activated venv would: init.sh's AWS CLI lives there."""
    venv_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_venv_tools()
    if args.command is None:
        return full_run(
            args.root.resolve(),
            args.project_name,
            args.deletion_policy,
            args.auth_mode,
            args.keep,
            hosting=args.hosting,
        )
    try:
        return command(args)
    except (SandboxError, KeyboardInterrupt) as exc:
        print(f"demo: FAILED at {args.command}: {_reason(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
