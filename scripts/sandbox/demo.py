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
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_common import contract

from scripts import REPO_ROOT
from scripts.gitlab_standin.runner import kill_leftover_runs

from .background import (
    fresh_root,
    load_state,
    print_access,
    process_alive,
    serve,
    start_detached,
    stop_detached,
)
from .exceptions import SandboxError
from .lab import BUILD_REPO, DEPLOY_REPO, HOSTING_MODES, DemoError, Lab, Project
from .lifecycle import ENVIRONMENT_STAGES, full_run, missing_prerequisites
from .report import Report, failure_reason
from .services import State
from .steps import (
    PREDICTION_ROWS,
    show_repositories,
    step_approve,
    step_build,
    step_create_project,
    step_hosting,
    step_pending_event,
    step_predict,
    step_prod,
    step_reject,
    step_up,
)

DEFAULT_ROOT = REPO_ROOT / ".sandbox"
DEFAULT_PROJECT = "abalone-demo"



# --- progress and summary --------------------------------------------------------------------------



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
    if state is not None and state.pid != os.getpid() and process_alive(state.pid):
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
            step_pending_event(lab, report, project, build.package_arn)
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
        if args.job == contract.DEPLOY_JOB_PROD:
            served = result.prod.get("model_package") or result.prod.get("model_package_arn")
            package = (
                lab.sm.describe_model_package(ModelPackageName=served)
                if served
                else lab.packages(project)[-1]
            )
            with report.stage("prediction from production"):
                step_predict(
                    lab, report, project, result.prod["name"], package, project.hosting, result.prod
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
        print(f"demo: FAILED at {args.command}: {failure_reason(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
