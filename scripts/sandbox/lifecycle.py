"""The full run: every stage in order, the IAM check, and the logs kept after a clean-up."""

from __future__ import annotations

import contextlib
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import REPO_ROOT
from scripts.iam.audit import Audit

from .background import fresh_root
from .lab import DemoError, Lab, Project
from .report import Report, failure_reason
from .services import Services, State
from .steps import (
    PREDICTION_ROWS,
    Build,
    Prediction,
    Production,
    Staged,
    show_repositories,
    step_approve,
    step_build,
    step_create_project,
    step_hosting,
    step_pending_event,
    step_predict,
    step_prod,
    step_up,
)

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
    build: Build | None = None
    deploy: Staged | None = None
    prod: Production | None = None
    prediction: Prediction | None = None
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
        build = run.build = step_build(lab, report, project)
        metrics = build.metrics
        report.facts["test_mse"] = float(metrics["mse"]["value"])
        report.facts["model metrics (evaluation.json)"] = ", ".join(
            f"{k}={v['value']:.3f}" for k, v in metrics.items()
        )
        report.facts["model package"] = build.package_arn
        stage.detail = f"test MSE {metrics['mse']['value']:.2f}"
    package_arn = build.package_arn
    with report.stage("pending event ignored"):
        step_pending_event(lab, report, project, package_arn)
    with report.stage("approve -> staging"):
        deploy = run.deploy = step_approve(lab, report, project, package_arn, hosting)
        report.facts["staging endpoint"] = deploy.staging["name"]
    with report.stage("production (manual job)"):
        if hosting == "batch":
            batch_input = lab.put_batch_input(project, build.package, PREDICTION_ROWS)
            report.say(f"records for production's transform: {batch_input}")
        prod = run.prod = step_prod(lab, report, project, deploy.pipeline_id, hosting=hosting)
        report.facts["production endpoint"] = prod.prod["name"]
    with report.stage("prediction from production") as stage:
        run.prediction = step_predict(
            lab, report, project, prod.prod["name"], build.package, hosting, prod.prod
        )
        stage.detail = f"MAE {run.prediction.mae:.2f} rings"
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
            report.failure = ("demo", failure_reason(exc))
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
