"""Pipeline execution for the stand-in: the `PipelineRunner` protocol and `GitlabCiLocalRunner`.

GitLab runs a project's `.gitlab-ci.yml` on its runners; the stand-in hands that to a runner object.
`GitlabCiLocalRunner` checks the pipeline's commit out of the project's bare repository and runs it
with gitlab-ci-local's shell executor (no Docker: `image:` is ignored, jobs run on this machine).
Reproduced: which jobs a source (push, api, trigger, web, merge_request_event) selects through
`rules:`, manual jobs that wait to be played, project and pipeline variables, artifacts between jobs,
per-job status and logs, and `workflow:rules`.

`workflow:rules` decide whether a pipeline is created at all ("Pipeline filtered out by workflow rules",
https://docs.gitlab.com/ci/yaml/workflow/). gitlab-ci-local 4.73 evaluates them only for their
`variables:` and never drops a pipeline, so `plan` asks gitlab-ci-local's own rule evaluator: it lists a
probe file holding one job whose `rules:` are the expanded workflow rules (and the global variables),
and the pipeline exists only if that job's `when` is not `never`.

Predefined variables come from the stand-in's model (`RunContext.predefined`, `RunContext.unset`), as
GitLab computes them (https://docs.gitlab.com/ci/variables/predefined_variables/); gitlab-ci-local's own
values for those names are replaced, and the ones GitLab leaves unset (CI_COMMIT_BRANCH in merge request
pipelines) are unset with `--unset-variable`. Jobs with `environment:` are reported with their
environment name and `url`; a job's `artifacts:reports:dotenv` values come back with its outcome so the
model can expand a dynamic environment URL (https://docs.gitlab.com/ci/environments/#set-a-dynamic-environment-url).

Left out: runners and tags, `services:`, caches, retries, `needs:` across pipelines, child pipelines,
per-job predefined variables (CI_JOB_ID and CI_JOB_URL are gitlab-ci-local's, not the stand-in's job
ids), and environments. `id_tokens:` are not read from the CI file (gitlab-ci-local leaves them unset):
with `id_token=`, every job gets one as AWS_ID_TOKEN, made by that callable from the pipeline's context
(project path, branch, protection), so what an IAM trust policy sees per job can be judged.
Jobs run as subprocesses of the stand-in and inherit its environment plus `env=`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from scripts import REPO_ROOT

DEFAULT_GITLAB_CI_LOCAL = REPO_ROOT / "node_modules" / ".bin" / "gitlab-ci-local"


@dataclass(frozen=True)
class JobSpec:
    """A job a pipeline contains, as planned before anything runs."""

    name: str
    stage: str
    when: str = "on_success"  # on_success | manual | always | on_failure | delayed
    allow_failure: bool = False
    environment: str | None = None  # `environment:name` as written (jobs that deploy)
    environment_url: str | None = None  # `environment:url` as written, may name dotenv variables


@dataclass(frozen=True)
class RunContext:
    """Everything a runner needs to run one pipeline; `variables` are project + pipeline variables.

    `ref_name` is the branch checked out (CI_COMMIT_REF_NAME); `predefined` are the predefined variables
    the model computed for this pipeline and `unset` the ones GitLab leaves unset in it.
    """

    pipeline_id: int
    project_id: int
    project_path: str
    default_branch: str
    repo_dir: Path
    ref: str
    sha: str
    source: str
    work_dir: Path
    server_url: str
    variables: Mapping[str, str] = field(default_factory=dict)
    file_variables: frozenset[str] = frozenset()
    ref_protected: bool = False
    ref_name: str = ""
    predefined: Mapping[str, str] = field(default_factory=dict)
    unset: frozenset[str] = frozenset()

    @property
    def checkout_branch(self) -> str:
        return self.ref_name or self.ref.replace("refs/heads/", "")


class PipelineConfigError(Exception):
    """The CI configuration cannot be used (missing file, invalid YAML): GitLab refuses the pipeline."""


class PipelineFiltered(Exception):
    """`workflow:rules` select no pipeline for this source and ref: GitLab creates none."""

    def __init__(self) -> None:
        super().__init__("Pipeline filtered out by workflow rules.")


class JobSink(Protocol):
    """Where a runner reports progress; the stand-in's model implements it."""

    def job_started(self, name: str) -> None: ...

    def job_finished(self, name: str, status: str, log: str, dotenv: Mapping[str, str] | None = None) -> None:
        ...


class PipelineRunner(Protocol):
    """Plans synchronously (so the API can refuse at once), runs in a background thread of the model."""

    def plan(self, ctx: RunContext) -> list[JobSpec]: ...

    def run(self, ctx: RunContext, sink: JobSink) -> None: ...

    def play(self, ctx: RunContext, job_name: str, sink: JobSink) -> None: ...


_SUMMARY = re.compile(r"^\s*(PASS|FAIL|WARN)\s+(.+?)\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class GitlabCiLocalRunner:
    """Runs pipelines with gitlab-ci-local (shell executor) in `<work_dir>/src`, a checkout of the ref."""

    def __init__(
        self,
        executable: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 900.0,
        extra_args: Sequence[str] = (),
        live_file: Path | None = None,
    ) -> None:
        found = executable or (DEFAULT_GITLAB_CI_LOCAL if DEFAULT_GITLAB_CI_LOCAL.exists() else None)
        found = found or shutil.which("gitlab-ci-local")
        if not found:
            raise FileNotFoundError(
                "gitlab-ci-local not found: run `npm install` in the repository root (it pins 4.73.0)"
            )
        if not shutil.which("rsync"):
            raise FileNotFoundError("gitlab-ci-local needs rsync: apt-get install rsync")
        self.executable = str(found)
        self.env = dict(env or {})
        self.id_token: Callable[[RunContext], str] | None = None
        self.timeout = timeout
        self.extra_args = tuple(extra_args)
        self._live: set[subprocess.Popen[bytes]] = set()
        self._live_lock = threading.Lock()
        self.live_file = live_file

    def kill_all(self) -> None:
        """Kill every gitlab-ci-local run still going (with its jobs): for shutting a sandbox down."""
        with self._live_lock:
            live = list(self._live)
        for proc in live:
            _kill_group(proc)

    def _track(self, proc: subprocess.Popen[bytes], running: bool) -> None:
        """Keep `live_file` listing the process groups of running runs (so a crashed host can be cleaned)."""
        with self._live_lock:
            if running:
                self._live.add(proc)
            else:
                self._live.discard(proc)
            if self.live_file is not None:
                self.live_file.parent.mkdir(parents=True, exist_ok=True)
                self.live_file.write_text(json.dumps(sorted(p.pid for p in self._live)))

    # --- PipelineRunner -----------------------------------------------------------------------
    def plan(self, ctx: RunContext) -> list[JobSpec]:
        src = self._checkout(ctx)
        if not (src / ".gitlab-ci.yml").is_file():
            raise PipelineConfigError("Missing CI config file")
        result = subprocess.run(
            self._command(ctx, "--list-json"), cwd=src, env=self._env(), capture_output=True, check=False,
            timeout=120,
        )
        try:
            listed = json.loads(result.stdout.decode("utf-8", "replace"))
        except ValueError:
            listed = None
        if result.returncode != 0 or not isinstance(listed, list):
            detail = _ANSI.sub("", result.stderr.decode("utf-8", "replace")).strip().splitlines()
            raise PipelineConfigError(detail[-1] if detail else "Invalid CI configuration")
        expanded = _expanded_config(src)
        if not self._workflow_admits(ctx, src, expanded):
            raise PipelineFiltered()
        jobs = expanded.get("jobs", {})
        specs = [_job_spec(item, jobs.get(str(item.get("name"))))
                 for item in listed if item.get("when") != "never"]
        (ctx.work_dir / "plan.json").write_text(json.dumps([spec.name for spec in specs]))
        return specs

    def _workflow_admits(self, ctx: RunContext, src: Path, expanded: Mapping[str, Any]) -> bool:
        """Evaluate `workflow:rules` with gitlab-ci-local's rule evaluator (see the module docstring)."""
        rules = expanded.get("workflow_rules")
        if not rules:
            return True
        probe = {"variables": expanded.get("variables") or {},
                 _PROBE_JOB: {"script": ["true"], "rules": rules}}
        probe_file = src / ".gitlab-ci-local" / "workflow-probe.yml"
        probe_file.write_text(yaml.safe_dump(probe, sort_keys=False))
        result = subprocess.run(
            self._command(ctx, "--file", str(probe_file.relative_to(src)), "--list-json"), cwd=src,
            env=self._env(), capture_output=True, check=False, timeout=120,
        )
        try:
            listed = json.loads(result.stdout.decode("utf-8", "replace"))
        except ValueError:
            listed = None
        if result.returncode != 0 or not isinstance(listed, list):
            detail = _ANSI.sub("", result.stderr.decode("utf-8", "replace")).strip().splitlines()
            raise PipelineConfigError(f"workflow:rules: {detail[-1] if detail else 'cannot be evaluated'}")
        return any(item.get("name") == _PROBE_JOB and item.get("when") != "never" for item in listed)

    def run(self, ctx: RunContext, sink: JobSink) -> None:
        self._execute(ctx, [], sink)

    def play(self, ctx: RunContext, job_name: str, sink: JobSink) -> None:
        self._execute(ctx, [job_name], sink)

    # --- helpers ------------------------------------------------------------------------------
    def _checkout(self, ctx: RunContext) -> Path:
        src = ctx.work_dir / "src"
        if (src / ".git").exists():
            return src
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        git = ["git", "-c", "advice.detachedHead=false"]
        subprocess.run([*git, "clone", "--quiet", str(ctx.repo_dir), str(src)], check=True,
                       capture_output=True)
        branch = ctx.checkout_branch
        branch_args = ["-B", branch] if branch and branch != ctx.sha else []
        subprocess.run([*git, "checkout", "--quiet", *branch_args, ctx.sha], cwd=src, check=True,
                       capture_output=True)
        subprocess.run(["git", "remote", "remove", "origin"], cwd=src, check=True, capture_output=True)
        variables = {k: v for k, v in ctx.variables.items() if k not in ctx.file_variables}
        for key in ctx.file_variables:
            # GitLab puts a file variable's value in a temporary file and the variable holds its path.
            path = ctx.work_dir / "files" / key
            path.parent.mkdir(exist_ok=True)
            path.write_text(ctx.variables[key])
            variables[key] = str(path)
        (ctx.work_dir / "variables.json").write_text(json.dumps(variables))
        return src

    def _predefined(self, ctx: RunContext) -> dict[str, str]:
        namespace, _, name = ctx.project_path.rpartition("/")
        return {
            "CI_PIPELINE_SOURCE": ctx.source,
            "CI_PIPELINE_ID": str(ctx.pipeline_id),
            "CI_PROJECT_ID": str(ctx.project_id),
            "CI_PROJECT_PATH": ctx.project_path,
            "CI_PROJECT_NAMESPACE": namespace,
            "CI_PROJECT_NAME": name,
            "CI_DEFAULT_BRANCH": ctx.default_branch,
            "CI_SERVER_URL": ctx.server_url,
            "CI_API_V4_URL": f"{ctx.server_url}/api/v4",
            **({"AWS_ID_TOKEN": self.id_token(ctx)} if self.id_token is not None else {}),
        }

    def _command(self, ctx: RunContext, *args: str) -> list[str]:
        predefined = {**self._predefined(ctx), **ctx.predefined}
        for key in ctx.unset:
            predefined.pop(key, None)
        cmd = [
            self.executable,
            # gitlab-ci-local reads this path relative to its cwd (the checkout in work_dir/src).
            "--variables-file", "../variables.json",
            "--ignore-predefined-vars", ",".join([*predefined, *sorted(ctx.unset)]),
            "--no-color",
        ]
        for key, value in predefined.items():
            cmd += ["--variable", f"{key}={value}"]
        for key in sorted(ctx.unset):
            cmd += ["--unset-variable", key]
        return [*cmd, *self.extra_args, *args]

    def _env(self) -> dict[str, str]:
        """The jobs' environment: this process's, plus `env=`, never the host user's shell startup files.

        gitlab-ci-local feeds each job script to bash over a Node pipe, which is a socket; bash at shell
        level 1 with a socket on stdin reads ~/.bashrc as if sshd had started it (bash(1), INVOCATION),
        so a dotfile's PATH (pyenv's shims, say) would decide which python a job runs. A shell level of
        at least 1 here makes that bash level 2, which skips it.
        """
        env = {**os.environ, **self.env}
        level = env.get("SHLVL", "")
        if not level.isdigit() or int(level) < 1:
            env["SHLVL"] = "1"
        return env

    def _execute(self, ctx: RunContext, jobs: list[str], sink: JobSink) -> None:
        src = self._checkout(ctx)
        plan_file = ctx.work_dir / "plan.json"
        if plan_file.exists():
            planned = json.loads(plan_file.read_text())
        else:
            planned = [s.name for s in self.plan(ctx)]
        names = sorted(planned, key=len, reverse=True)
        cmd = self._command(
            ctx, "--force-shell-executor", "--shell-isolation", "--no-artifacts-to-source",
            "--max-job-name-padding", "0", *jobs,
        )
        proc = subprocess.Popen(
            cmd, cwd=src, env=self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self._track(proc, running=True)
        timer = threading.Timer(self.timeout, _kill_group, args=(proc,))
        timer.start()
        started: list[str] = []
        outcome: dict[str, str] = {}
        stdout_lines: list[str] = []
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
                stdout_lines.append(line)
                name = _starting_job(line, names)
                if name and name not in started:
                    started.append(name)
                    sink.job_started(name)
                summary = _SUMMARY.match(line)
                if summary and summary.group(2) in names:
                    outcome[summary.group(2)] = "success" if summary.group(1) == "PASS" else "failed"
            proc.wait()
        finally:
            timer.cancel()
            self._track(proc, running=False)
        timed_out = proc.returncode in (-signal.SIGKILL, -signal.SIGTERM)
        for name in started + [n for n in outcome if n not in started]:
            status = outcome.get(name, "failed")
            log = _job_log(src, name, stdout_lines)
            if timed_out and name not in outcome:
                log += f"\nERROR: Job timed out after {self.timeout:.0f} seconds\n"
            sink.job_finished(name, status, log, _dotenv(src, name))


_PROBE_JOB = "workflow-rules-probe"


def _expanded_config(src: Path) -> dict[str, Any]:
    """Jobs, global variables and workflow rules of the configuration gitlab-ci-local expanded."""
    path = src / ".gitlab-ci-local" / "expanded-gitlab-ci.yml"
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:
        data = {}
    data = data if isinstance(data, dict) else {}
    workflow = data.get("workflow") if isinstance(data.get("workflow"), dict) else {}
    return {
        "jobs": {k: v for k, v in data.items() if isinstance(v, dict)},
        "variables": data.get("variables") if isinstance(data.get("variables"), dict) else {},
        "workflow_rules": workflow.get("rules") if isinstance(workflow, dict) else None,
    }


def _job_spec(item: Mapping[str, object], config: Mapping[str, Any] | None = None) -> JobSpec:
    when = str(item.get("when") or "on_success")
    allow_failure = bool(item.get("allow_failure"))
    if when == "manual" and "rules" not in item:
        # GitLab makes a `when: manual` job outside `rules:` non-blocking; gitlab-ci-local reports false.
        allow_failure = True
    environment = (config or {}).get("environment")
    if isinstance(environment, str):
        environment = {"name": environment}
    env_name = str(environment["name"]) if isinstance(environment, dict) and environment.get("name") else None
    env_url = environment.get("url") if isinstance(environment, dict) else None
    return JobSpec(str(item["name"]), str(item.get("stage") or "test"), when, allow_failure, env_name,
                   str(env_url) if env_url else None)


def _dotenv(src: Path, name: str) -> dict[str, str]:
    """The KEY=value lines of a job's `artifacts:reports:dotenv` file(s), last value winning."""
    folder = src / ".gitlab-ci-local" / "artifacts" / name / ".gitlab-ci-reports" / "dotenv"
    values: dict[str, str] = {}
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
                values[key.strip()] = value.strip()
    return values


def _starting_job(line: str, names: Sequence[str]) -> str | None:
    for name in names:
        if line.startswith(name) and line[len(name):].lstrip().startswith("starting "):
            return name
    return None


def _job_log(src: Path, name: str, stdout_lines: Sequence[str]) -> str:
    path = src / ".gitlab-ci-local" / "output" / f"{name}.log"
    if path.is_file():
        return _ANSI.sub("", path.read_text(errors="replace"))
    prefix = f"{name} "
    picked = [line[len(prefix):] for line in stdout_lines if line.startswith(prefix)]
    return "\n".join(picked) + "\n"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def kill_leftover_runs(live_file: Path) -> list[int]:
    """Kill the gitlab-ci-local process groups a host that died left running (by the ids it recorded,
    and only if they still are gitlab-ci-local); the ids killed."""
    try:
        pids = [int(p) for p in json.loads(live_file.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    killed = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"gitlab-ci-local" in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
    return killed
