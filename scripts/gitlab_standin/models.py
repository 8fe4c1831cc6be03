"""The stand-in's state: namespaces, projects (each a real bare git repository), CI/CD variables,
pipelines and jobs. Every public method takes the backend's lock, so the threaded server is safe."""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    MissingParameter,
    NotFound,
    PipelineRefused,
    ValidationFailed,
)
from .gitrepo import FileAction, GitFailed, GitRepo
from .runner import JobSpec, PipelineConfigError, PipelineRunner, RunContext

OVERRIDE_ROLES = ("no_one_allowed", "developer", "maintainer", "owner")
VISIBILITIES = ("private", "internal", "public")
PIPELINE_SOURCES = ("push", "web", "api", "trigger", "schedule", "pipeline")
FINISHED = ("success", "failed", "canceled", "skipped", "manual")
NO_JOBS = (
    "Pipeline will not run for the selected trigger. The rules configuration prevented any jobs from "
    "being added to the pipeline."
)
_PATH_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$")
_KEY_RE = re.compile(r"^[a-zA-Z0-9_]{1,255}$")
# GitLab's masking rules: expanded values use a restricted alphabet, raw values any non-space.
_MASKABLE = re.compile(r"^[a-zA-Z0-9_+=/@:.~-]{8,}$")
_MASKABLE_RAW = re.compile(r"^\S{8,}$")
MASK = "[MASKED]"
_BAD_ROLE = "ci_pipeline_variables_minimum_override_role does not have a valid value"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Namespace:
    id: int
    name: str
    path: str
    full_path: str
    kind: str  # "group" | "user"
    parent_id: int | None = None

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "path": self.path, "kind": self.kind,
            "full_path": self.full_path, "full_name": self.full_path.replace("/", " / "),
            "parent_id": self.parent_id, "web_url": f"{base_url}/{self.full_path}",
            "visibility": "private", "description": "",
        }


@dataclass
class Variable:
    key: str
    value: str
    variable_type: str = "env_var"
    protected: bool = False
    masked: bool = False
    hidden: bool = False
    raw: bool = False
    environment_scope: str = "*"
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "value": None if self.hidden else self.value,
            "variable_type": self.variable_type, "protected": self.protected, "masked": self.masked,
            "hidden": self.hidden, "raw": self.raw, "environment_scope": self.environment_scope,
            "description": self.description,
        }


@dataclass
class Job:
    id: int
    name: str
    stage: str
    when: str
    allow_failure: bool
    status: str
    pipeline_id: int
    created_at: str = field(default_factory=now)
    started_at: str | None = None
    finished_at: str | None = None
    log: str = ""
    _t0: float | None = None
    duration: float | None = None


@dataclass
class Pipeline:
    id: int
    iid: int
    project_id: int
    ref: str
    sha: str
    source: str
    variables: list[dict[str, str]]
    status: str = "created"
    jobs: list[Job] = field(default_factory=list)
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    started_at: str | None = None
    finished_at: str | None = None
    context: RunContext | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ProtectedBranch:
    """A protected branch: who may push and merge (GitLab access levels: 30 Developer, 40 Maintainer)."""

    id: int
    name: str
    push_access_level: int = 40
    merge_access_level: int = 40

    def to_json(self) -> dict[str, Any]:
        def levels(level: int) -> list[dict[str, Any]]:
            return [{"id": self.id, "access_level": level, "access_level_description": ACCESS_LEVELS[level]}]

        return {
            "id": self.id, "name": self.name, "push_access_levels": levels(self.push_access_level),
            "merge_access_levels": levels(self.merge_access_level), "allow_force_push": False,
            "code_owner_approval_required": False,
        }


@dataclass
class Trigger:
    """A pipeline trigger token of a project."""

    id: int
    token: str
    description: str
    created_at: str = field(default_factory=now)

    def to_json(self, show_token: bool) -> dict[str, Any]:
        # GitLab shows the whole token only to its owner; the stand-in has one user, who owns them all.
        return {"id": self.id, "token": self.token if show_token else self.token[:4], "description": self.description,
                "created_at": self.created_at, "updated_at": self.created_at, "last_used": None,
                "owner": {"id": 1, "username": "root"}}


@dataclass
class Project:
    id: int
    name: str
    path: str
    namespace: Namespace
    repo: GitRepo
    description: str | None = None
    topics: list[str] = field(default_factory=list)
    default_branch: str = "main"
    visibility: str = "private"
    archived: bool = False
    ci_pipeline_variables_minimum_override_role: str = "no_one_allowed"
    restrict_user_defined_variables: bool = True
    created_at: str = field(default_factory=now)
    last_activity_at: str = field(default_factory=now)
    variables: dict[tuple[str, str], Variable] = field(default_factory=dict)
    pipeline_count: int = 0
    protected_branches: dict[str, ProtectedBranch] = field(default_factory=dict)
    triggers: dict[int, Trigger] = field(default_factory=dict)

    @property
    def full_path(self) -> str:
        return f"{self.namespace.full_path}/{self.path}"


class Backend:
    """All state of one stand-in. `base_url` is set by the server once it knows its port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        tokens: Sequence[str],
        username: str = "standin-user",
        groups: Iterable[str] = (),
        runner: PipelineRunner | None = None,
        pipelines_on_push: bool | None = None,
        new_project_override_role: str = "no_one_allowed",
    ) -> None:
        self.data_dir = data_dir
        self.tokens = tuple(tokens)
        self.username = username
        self.runner = runner
        self.pipelines_on_push = runner is not None if pipelines_on_push is None else pipelines_on_push
        self.new_project_override_role = new_project_override_role
        self.base_url = ""
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._seed_groups = tuple(groups)
        self._threads: list[threading.Thread] = []
        self.reset()

    # --- lifecycle ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every project, pipeline and group except the seeded ones; wipe the repositories."""
        with self.lock:
            self._next_id = {"namespace": 1, "project": 1, "pipeline": 1, "job": 1}
            self.namespaces: dict[int, Namespace] = {}
            self.projects: dict[int, Project] = {}
            self.pipelines: dict[int, Pipeline] = {}
            self.jobs: dict[int, Job] = {}
            for sub in ("repos", "pipelines"):
                shutil.rmtree(self.data_dir / sub, ignore_errors=True)
                (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
            ns = self._new_namespace(self.username, self.username, None, "user")
            self.user = {
                "id": 1, "username": self.username, "name": "Standin User", "state": "active",
                "email": f"{self.username}@example.invalid", "namespace_id": ns.id,
                "is_admin": True, "bot": False,
            }
            self.user_namespace = ns
            for group in self._seed_groups:
                self.create_group(group)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait for background pipeline threads (tests; shutdown)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _id(self, kind: str) -> int:
        value = self._next_id.get(kind, 1)
        self._next_id[kind] = value + 1
        return value

    # --- users, groups, namespaces ------------------------------------------------------------
    def current_user(self) -> dict[str, Any]:
        return {**self.user, "web_url": f"{self.base_url}/{self.username}"}

    def _new_namespace(self, name: str, path: str, parent: Namespace | None, kind: str) -> Namespace:
        full_path = f"{parent.full_path}/{path}" if parent else path
        ns = Namespace(self._id("namespace"), name, path, full_path, kind, parent.id if parent else None)
        self.namespaces[ns.id] = ns
        return ns

    def create_group(self, full_path: str, name: str | None = None) -> Namespace:
        """Create a group (and its missing parents) from a full path like `ml/team`; idempotent."""
        with self.lock:
            parent: Namespace | None = None
            for part in full_path.strip("/").split("/"):
                if not _PATH_RE.match(part):
                    raise ValidationFailed({"path": ["can contain only letters, digits, '_', '-' and '.'"]})
                wanted = f"{parent.full_path}/{part}" if parent else part
                found = self._find_namespace_path(wanted)
                if found is None:
                    last = wanted == full_path.strip("/")
                    found = self._new_namespace(name if (name and last) else part, part, parent, "group")
                parent = found
            assert parent is not None
            return parent

    def _find_namespace_path(self, full_path: str) -> Namespace | None:
        wanted = full_path.casefold()
        return next((n for n in self.namespaces.values() if n.full_path.casefold() == wanted), None)

    def namespace(self, ident: str | int, *, kind: str | None = None) -> Namespace:
        """A namespace by numeric id or (url-encoded) full path; NotFound("Group"/"Namespace")."""
        what = "Group" if kind == "group" else "Namespace"
        with self.lock:
            text = unquote(str(ident))
            ns = self.namespaces.get(int(text)) if text.isdigit() else self._find_namespace_path(text)
            if ns is None or (kind and ns.kind != kind):
                raise NotFound(what)
            return ns

    def list_namespaces(self, kind: str | None = None, search: str | None = None) -> list[Namespace]:
        with self.lock:
            found = [n for n in self.namespaces.values() if kind is None or n.kind == kind]
            if search:
                found = [n for n in found if search.casefold() in n.full_path.casefold()]
            return found

    # --- projects -----------------------------------------------------------------------------
    def project(self, ident: str | int) -> Project:
        with self.lock:
            text = unquote(str(ident))
            if text.isdigit():
                project = self.projects.get(int(text))
            else:
                wanted = text.casefold()
                project = next((p for p in self.projects.values() if p.full_path.casefold() == wanted), None)
            if project is None:
                raise NotFound("Project")
            return project

    def list_projects(self, namespace: Namespace | None = None, search: str | None = None) -> list[Project]:
        with self.lock:
            found = list(self.projects.values())
            if namespace is not None:
                prefix = namespace.full_path.casefold() + "/"
                found = [p for p in found if p.full_path.casefold().startswith(prefix)]
            if search:
                needle = search.casefold()
                found = [p for p in found if needle in p.name.casefold() or needle in p.path.casefold()]
            return found

    def create_project(
        self,
        *,
        name: str | None,
        path: str | None,
        namespace_id: str | int | None = None,
        description: str | None = None,
        topics: list[str] | None = None,
        visibility: str | None = None,
        default_branch: str | None = None,
        initialize_with_readme: bool = False,
        ci_pipeline_variables_minimum_override_role: str | None = None,
    ) -> Project:
        if not name and not path:
            raise MissingParameter("name", "path")
        path = path or _slug(name or "")
        name = name or path
        with self.lock:
            ns = self.namespace(namespace_id) if namespace_id not in (None, "") else self.user_namespace
            errors: dict[str, list[str]] = {}
            if not _PATH_RE.match(path) or path.endswith((".git", ".atom")):
                errors["path"] = [
                    "can contain only letters, digits, '_', '-' and '.'. Cannot start with '-', "
                    "end in '.git' or end in '.atom'"
                ]
            siblings = [p for p in self.projects.values() if p.namespace.id == ns.id]
            if any(p.name.casefold() == name.casefold() for p in siblings):
                errors["project_namespace.name"] = ["has already been taken"]
                errors["name"] = ["has already been taken"]
            if any(p.path.casefold() == path.casefold() for p in siblings) or any(
                n.parent_id == ns.id and n.path.casefold() == path.casefold()
                for n in self.namespaces.values()
            ):
                errors["path"] = ["has already been taken"]
            if visibility and visibility not in VISIBILITIES:
                raise BadRequest("visibility does not have a valid value")
            role = ci_pipeline_variables_minimum_override_role or self.new_project_override_role
            if role not in OVERRIDE_ROLES:
                raise BadRequest(_BAD_ROLE)
            if errors:
                raise ValidationFailed(errors)
            pid = self._id("project")
            branch = default_branch or "main"
            repo = GitRepo(self.data_dir / "repos" / f"{pid}.git")
            repo.init(branch)
            project = Project(
                pid, name, path, ns, repo, description=description, topics=list(topics or []),
                default_branch=branch, visibility=visibility or "private",
                ci_pipeline_variables_minimum_override_role=role,
                restrict_user_defined_variables=role == "no_one_allowed",
            )
            self.projects[pid] = project
            if initialize_with_readme:
                repo.commit(branch, "Initial commit",
                            [FileAction("create", "README.md", f"# {name}\n".encode())], None)
            return project

    def update_project(self, project: Project, changes: Mapping[str, Any]) -> Project:
        with self.lock:
            if "path" in changes and changes["path"] and changes["path"] != project.path:
                new_path = str(changes["path"])
                clash = any(
                    p.namespace.id == project.namespace.id and p.id != project.id
                    and p.path.casefold() == new_path.casefold() for p in self.projects.values()
                )
                if clash:
                    raise ValidationFailed({"path": ["has already been taken"]})
                if not _PATH_RE.match(new_path):
                    raise ValidationFailed({"path": ["can contain only letters, digits, '_', '-' and '.'"]})
                project.path = new_path
            if changes.get("name"):
                project.name = str(changes["name"])
            if "description" in changes:
                project.description = changes["description"]
            if "topics" in changes:
                project.topics = list(changes["topics"] or [])
            if changes.get("visibility"):
                if changes["visibility"] not in VISIBILITIES:
                    raise BadRequest("visibility does not have a valid value")
                project.visibility = changes["visibility"]
            if changes.get("default_branch"):
                project.default_branch = str(changes["default_branch"])
                if project.default_branch in project.repo.branches() or project.repo.is_empty():
                    project.repo.set_head(project.default_branch)
            role = changes.get("ci_pipeline_variables_minimum_override_role")
            if role:
                if role not in OVERRIDE_ROLES:
                    raise BadRequest(_BAD_ROLE)
                project.ci_pipeline_variables_minimum_override_role = role
            if changes.get("restrict_user_defined_variables") is not None:
                project.restrict_user_defined_variables = bool(changes["restrict_user_defined_variables"])
            project.last_activity_at = now()
            return project

    def set_archived(self, project: Project, archived: bool) -> Project:
        with self.lock:
            project.archived = archived
            return project

    def delete_project(self, project: Project) -> None:
        with self.lock:
            self.projects.pop(project.id, None)
            for pipeline in [p for p in self.pipelines.values() if p.project_id == project.id]:
                self.pipelines.pop(pipeline.id)
                for job in pipeline.jobs:
                    self.jobs.pop(job.id, None)
        project.repo.remove()

    # --- CI/CD variables ----------------------------------------------------------------------
    def variables(self, project: Project) -> list[Variable]:
        with self.lock:
            return list(project.variables.values())

    def variable(self, project: Project, key: str, scope: str | None = None) -> Variable:
        with self.lock:
            matches = [v for v in project.variables.values() if v.key == key]
            if scope is not None:
                matches = [v for v in matches if v.environment_scope == scope]
            if not matches:
                raise NotFound("Variable")
            return matches[0]

    def create_variable(self, project: Project, var: Variable) -> Variable:
        if not var.key:
            raise MissingParameter("key")
        if not _KEY_RE.match(var.key):
            raise ValidationFailed({"key": ["can contain only letters, digits and '_'."]})
        _check_variable(var)
        with self.lock:
            if (var.key, var.environment_scope) in project.variables:
                raise ValidationFailed({"key": [f"({var.key}) has already been taken"]})
            project.variables[(var.key, var.environment_scope)] = var
            return var

    def update_variable(self, project: Project, var: Variable, changes: Mapping[str, Any]) -> Variable:
        with self.lock:
            candidate = Variable(**{**var.__dict__, **{k: v for k, v in changes.items() if v is not None}})
            _check_variable(candidate)
            if candidate.hidden != var.hidden:
                raise BadRequest("Only the 'masked_and_hidden' setting at creation can hide a variable")
            project.variables.pop((var.key, var.environment_scope), None)
            project.variables[(candidate.key, candidate.environment_scope)] = candidate
            return candidate

    def delete_variable(self, project: Project, var: Variable) -> None:
        with self.lock:
            project.variables.pop((var.key, var.environment_scope), None)

    # --- repository ---------------------------------------------------------------------------
    def commit(
        self,
        project: Project,
        *,
        branch: str,
        message: str,
        actions: list[FileAction],
        start_branch: str | None = None,
        start_sha: str | None = None,
        author: tuple[str, str] | None = None,
    ) -> str:
        with self.lock:
            if project.archived:
                raise Forbidden()
            repo = project.repo
            branches = repo.branches()
            if branch in branches:
                parent: str | None = branches[branch]
            elif start_sha or start_branch:
                parent = repo.resolve(start_sha or start_branch or "")
                if parent is None:
                    raise BadRequest(f"Invalid reference name: {start_sha or start_branch}")
            elif not branches:
                parent = None
            else:
                raise BadRequest("You can only create or edit files when you are on a branch")
            try:
                sha = repo.commit(branch, message, actions, parent, author)
            except GitFailed as e:
                raise BadRequest(f"Your changes could not be committed: {e}") from e
            if not branches:
                repo.set_head(project.default_branch if project.default_branch == branch else branch)
                if project.default_branch != branch:
                    project.default_branch = branch
            project.last_activity_at = now()
        if self.pipelines_on_push and self.runner is not None:
            self._start_push_pipeline(project, branch, sha)
        return sha

    def ref_sha(self, project: Project, ref: str | None) -> str:
        sha = project.repo.resolve(ref or project.default_branch)
        if sha is None:
            raise NotFound("Commit" if ref else "Tree")
        return sha

    # --- pipelines ----------------------------------------------------------------------------
    def create_pipeline(
        self, project: Project, ref: str, variables: Sequence[Mapping[str, Any]], source: str = "api"
    ) -> Pipeline:
        if not ref:
            raise MissingParameter("ref")
        with self.lock:
            if project.archived:
                raise Forbidden()
            if variables and project.restrict_user_defined_variables and (
                project.ci_pipeline_variables_minimum_override_role == "no_one_allowed"
            ):
                raise PipelineRefused("Insufficient permissions to set pipeline variables")
            sha = project.repo.resolve(ref)
            if sha is None:
                raise PipelineRefused("Reference not found")
            try:
                project.repo.blob(sha, ".gitlab-ci.yml")
            except NotFound:
                raise PipelineRefused("Missing CI config file") from None
            pipeline = self._new_pipeline(project, ref, sha, source, variables)
        return self._plan_and_start(project, pipeline, refuse=True)

    def _start_push_pipeline(self, project: Project, branch: str, sha: str) -> None:
        with self.lock:
            try:
                project.repo.blob(sha, ".gitlab-ci.yml")
            except NotFound:
                return
            pipeline = self._new_pipeline(project, branch, sha, "push", [])
        self._plan_and_start(project, pipeline, refuse=False)

    def _new_pipeline(
        self, project: Project, ref: str, sha: str, source: str, variables: Sequence[Mapping[str, Any]]
    ) -> Pipeline:
        project.pipeline_count += 1
        pipeline = Pipeline(
            self._id("pipeline"), project.pipeline_count, project.id, ref, sha, source,
            [{"key": str(v.get("key")), "value": str(v.get("value", "")),
              "variable_type": str(v.get("variable_type") or "env_var")} for v in variables],
        )
        pipe_vars = {v["key"]: v["value"] for v in pipeline.variables}
        # Protected variables reach only pipelines of protected branches (GitLab docs, CI/CD variables:
        # "Protect a CI/CD variable").
        protected_ref = ref in project.protected_branches
        proj_vars = {
            v.key: v.value for v in project.variables.values()
            if v.environment_scope == "*" and (protected_ref or not v.protected)
        }
        file_vars = {v.key for v in project.variables.values() if v.variable_type == "file"}
        file_vars |= {v["key"] for v in pipeline.variables if v["variable_type"] == "file"}
        pipeline.context = RunContext(
            pipeline_id=pipeline.id, project_id=project.id, project_path=project.full_path,
            default_branch=project.default_branch, repo_dir=project.repo.path, ref=ref, sha=sha,
            source=source, work_dir=self.data_dir / "pipelines" / str(pipeline.id),
            server_url=self.base_url, variables={**proj_vars, **pipe_vars},
            file_variables=frozenset(file_vars), ref_protected=protected_ref,
        )
        return pipeline

    def _plan_and_start(self, project: Project, pipeline: Pipeline, *, refuse: bool) -> Pipeline:
        """Ask the runner which jobs run (outside the lock: it may take a second), then start them."""
        runner, ctx = self.runner, pipeline.context
        if runner is None or ctx is None:
            with self.lock:
                self.pipelines[pipeline.id] = pipeline
            return pipeline
        try:
            specs = runner.plan(ctx)
        except PipelineConfigError as e:
            if refuse:
                raise PipelineRefused(str(e)) from None
            specs, pipeline.status = [], "failed"
        if not specs and pipeline.status != "failed":
            shutil.rmtree(ctx.work_dir, ignore_errors=True)
            if refuse:
                raise PipelineRefused(NO_JOBS)
            return pipeline  # GitLab creates no pipeline for a push whose rules select nothing
        with self.lock:
            for spec in specs:
                job = self._new_job(pipeline, spec)
                pipeline.jobs.append(job)
            self.pipelines[pipeline.id] = pipeline
            self._refresh(pipeline)
        if specs:
            self._background(lambda: runner.run(ctx, _Sink(self, pipeline)), pipeline)
        return pipeline

    def _new_job(self, pipeline: Pipeline, spec: JobSpec) -> Job:
        status = "manual" if spec.when == "manual" else "created"
        job = Job(self._id("job"), spec.name, spec.stage, spec.when, spec.allow_failure, status, pipeline.id)
        self.jobs[job.id] = job
        return job

    def _background(self, work: Any, pipeline: Pipeline) -> None:
        def target() -> None:
            with pipeline.lock:
                try:
                    work()
                except Exception as e:  # noqa: BLE001 - a runner crash must fail the pipeline, not the server
                    with self.lock:
                        for job in pipeline.jobs:
                            if job.status in ("created", "pending", "running"):
                                job.status, job.log = "failed", job.log + f"\nrunner error: {e}\n"
                with self.lock:
                    for job in pipeline.jobs:
                        if job.status in ("created", "pending"):
                            job.status = "skipped"
                    self._refresh(pipeline)

        thread = threading.Thread(target=target, name=f"pipeline-{pipeline.id}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def play_job(self, project: Project, job: Job) -> Job:
        with self.lock:
            pipeline = self.pipelines[job.pipeline_id]
            if job.status != "manual" or self.runner is None or pipeline.project_id != project.id:
                raise BadRequest("400 Bad request - Unplayable Job")
            job.status = "pending"
            self._refresh(pipeline)
        runner, ctx = self.runner, pipeline.context
        assert ctx is not None
        self._background(lambda: runner.play(ctx, job.name, _Sink(self, pipeline)), pipeline)
        return job

    def pipeline(self, project: Project, pipeline_id: str | int) -> Pipeline:
        with self.lock:
            pipeline = self.pipelines.get(int(pipeline_id)) if str(pipeline_id).isdigit() else None
            if pipeline is None or pipeline.project_id != project.id:
                raise NotFound("")
            return pipeline

    def list_pipelines(self, project: Project, ref: str | None = None, status: str | None = None,
                       source: str | None = None) -> list[Pipeline]:
        with self.lock:
            found = [p for p in self.pipelines.values() if p.project_id == project.id]
            found = [p for p in found if (not ref or p.ref == ref) and (not status or p.status == status)
                     and (not source or p.source == source)]
            return sorted(found, key=lambda p: p.id, reverse=True)

    def job(self, project: Project, job_id: str | int) -> Job:
        with self.lock:
            job = self.jobs.get(int(job_id)) if str(job_id).isdigit() else None
            if job is None or self.pipelines[job.pipeline_id].project_id != project.id:
                raise NotFound("")
            return job

    def list_jobs(self, project: Project, pipeline: Pipeline | None = None) -> list[Job]:
        with self.lock:
            pipelines = [pipeline] if pipeline else self.list_pipelines(project)
            return sorted((j for p in pipelines for j in p.jobs), key=lambda j: j.id, reverse=True)

    def wait_for_pipeline(self, pipeline_id: int, timeout: float = 60.0) -> Pipeline:
        """Block until the pipeline is no longer created/pending/running (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                pipeline = self.pipelines[pipeline_id]
                if pipeline.status in FINISHED and not any(
                    j.status in ("created", "pending", "running") for j in pipeline.jobs
                ):
                    return pipeline
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"pipeline {pipeline_id} still {pipeline.status} after {timeout}s")
                self.changed.wait(remaining)

    def _refresh(self, pipeline: Pipeline) -> None:
        """Derive the pipeline's status from its jobs as GitLab does, and wake waiters."""
        statuses = [j.status for j in pipeline.jobs]
        active = [s for s in statuses if s in ("pending", "running")]
        if not statuses:
            status = pipeline.status
        elif "running" in statuses or (active and any(s in ("success", "failed") for s in statuses)):
            status = "running"
        elif active:
            status = "pending"
        elif "created" in statuses:
            status = "created"
        elif any(j.status == "failed" and not j.allow_failure for j in pipeline.jobs):
            status = "failed"
        elif any(j.status == "manual" and not j.allow_failure for j in pipeline.jobs):
            status = "manual"
        elif all(s in ("skipped", "manual") for s in statuses):
            status = "skipped" if "manual" not in statuses else "manual"
        else:
            status = "success"
        if status != pipeline.status:
            pipeline.status = status
            if status == "running" and pipeline.started_at is None:
                pipeline.started_at = now()
            if status in FINISHED:
                pipeline.finished_at = now()
        pipeline.updated_at = now()
        self.changed.notify_all()

    def masked_values(self, pipeline: Pipeline) -> list[str]:
        project = self.projects.get(pipeline.project_id)
        values = [v.value for v in project.variables.values() if v.masked] if project else []
        return sorted((v for v in values if len(v) >= 8), key=len, reverse=True)


def protect_branch(backend: Backend, project: Project, name: str, push: int, merge: int) -> ProtectedBranch:
    with backend.lock:
        if name in project.protected_branches:
            raise Conflict(f"Protected branch '{name}' already exists")
        for level in (push, merge):
            if level not in ACCESS_LEVELS:
                raise BadRequest(f"access_level {level} is not valid")
        branch = ProtectedBranch(backend._id("protected_branch"), name, push, merge)
        project.protected_branches[name] = branch
        return branch


def unprotect_branch(backend: Backend, project: Project, name: str) -> None:
    with backend.lock:
        if project.protected_branches.pop(name, None) is None:
            raise NotFound()


def create_trigger(backend: Backend, project: Project, description: str) -> Trigger:
    with backend.lock:
        trigger = Trigger(backend._id("trigger"), f"glptt-{secrets.token_hex(20)}", description)
        project.triggers[trigger.id] = trigger
        return trigger


def delete_trigger(backend: Backend, project: Project, trigger_id: int) -> None:
    with backend.lock:
        if project.triggers.pop(trigger_id, None) is None:
            raise NotFound("Trigger")


def run_trigger(
    backend: Backend, project: Project, token: str, ref: str, variables: Sequence[Mapping[str, Any]]
) -> Pipeline:
    with backend.lock:
        valid = any(secrets.compare_digest(token, t.token) for t in project.triggers.values())
    if not valid:
        raise NotFound()
    return backend.create_pipeline(project, ref, variables, source="trigger")


class _Sink:
    """The JobSink a runner reports to: records status, timestamps and (masked) logs."""

    def __init__(self, backend: Backend, pipeline: Pipeline) -> None:
        self.backend = backend
        self.pipeline = pipeline

    def _job(self, name: str) -> Job | None:
        return next((j for j in self.pipeline.jobs if j.name == name), None)

    def job_started(self, name: str) -> None:
        with self.backend.lock:
            job = self._job(name)
            if job is not None:
                job.status, job.started_at, job._t0 = "running", now(), time.monotonic()
                self.backend._refresh(self.pipeline)

    def job_finished(self, name: str, status: str, log: str) -> None:
        with self.backend.lock:
            job = self._job(name)
            if job is None:
                return
            for secret in self.backend.masked_values(self.pipeline):
                log = log.replace(secret, MASK)
            job.status, job.log, job.finished_at = status, log, now()
            job.started_at = job.started_at or job.finished_at
            job.duration = round(time.monotonic() - job._t0, 3) if job._t0 else 0.0
            self.backend._refresh(self.pipeline)


ACCESS_LEVELS = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers", 60: "Admins"}


class Protection:
    """Protected branches and pipeline triggers of the stand-in's projects, as GitLab's API has them.

    Protected branches (https://docs.gitlab.com/api/protected_branches/): POST protects a branch (409
    "Protected branch '<name>' already exists" when it is), DELETE unprotects it, GET lists or shows one
    (404 "Not found"); levels 0/30/40/60. Pipeline triggers (https://docs.gitlab.com/api/pipeline_triggers/):
    list, create (the response carries the token), delete; POST /projects/:id/trigger/pipeline with
    `token`, `ref` and `variables[KEY]` starts a pipeline with source "trigger" as the trigger's owner,
    without a private token, and answers 404 for a token of another project or a revoked one.
    Left out: wildcard branch patterns, per-user/group access, unprotect_access_level, code owners,
    trigger ownership by other users.
    """


def _check_variable(var: Variable) -> None:
    if var.variable_type not in ("env_var", "file"):
        raise BadRequest("variable_type does not have a valid value")
    if var.masked and not (_MASKABLE_RAW if var.raw else _MASKABLE).match(var.value or ""):
        raise ValidationFailed({"value": ["is invalid"]})


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_.]+", "-", name.strip()).strip("-").lower()
    return slug or "project"
