"""The stand-in's state: namespaces, projects (each a real bare git repository), CI/CD variables,
access tokens, merge requests and their notes, pipelines, jobs, environments and deployments.
Every public method takes the backend's lock, so the threaded server is safe.

GitLab rules reproduced here, each from GitLab's documentation:
- CI_PIPELINE_SOURCE is `push` for pushes and commits, `api` for POST /pipeline, `merge_request_event` for
  merge request pipelines (https://docs.gitlab.com/ci/jobs/job_rules/#ci_pipeline_source-predefined-variable).
- A push creates a pipeline for each updated branch, with CI_PIPELINE_SOURCE=push, unless
  `workflow:rules` filter it out (https://docs.gitlab.com/ci/pipelines/ ,
  https://docs.gitlab.com/ci/yaml/workflow/); a pushed branch that is the source of open merge requests
  also gets a merge request pipeline, and its branch pipeline sees CI_OPEN_MERGE_REQUESTS
  (https://docs.gitlab.com/ci/pipelines/merge_request_pipelines/ ,
  https://docs.gitlab.com/ci/variables/predefined_variables/).
- Merge request pipelines run on `refs/merge-requests/<iid>/head` (the ref GitLab keeps for each merge
  request) with CI_PIPELINE_SOURCE=merge_request_event, the CI_MERGE_REQUEST_* variables and without
  CI_COMMIT_BRANCH; creating a merge request starts one, as does each push to its source branch. If no job
  is selected for a merge request pipeline, none is created
  (https://docs.gitlab.com/ci/pipelines/merge_request_pipelines/).
- Merging makes a merge commit on the target branch (merge method "merge", the default) whose message
  follows GitLab's default merge commit template (https://docs.gitlab.com/user/project/merge_requests/commit_templates/):
  "Merge branch '<source>' into '<target>'", the title, "See merge request <group/project!iid>"; the push
  to the target branch then starts its pipeline. A stale `sha` is 409, a closed or merged request 405,
  conflicts 406 (https://docs.gitlab.com/api/merge_requests/#merge-a-merge-request).
- Project access tokens act as a bot user on their project only, with their scopes (`api` for
  everything, `read_api` for reads, `read_repository`/`write_repository` for Git over HTTP) and role;
  pushing needs at least Developer (30), reading code Reporter (20)
  (https://docs.gitlab.com/user/project/settings/project_access_tokens/ ,
  https://docs.gitlab.com/user/permissions/).
- A pipeline's `name` is the top-level `workflow:name` of its CI file, with `$VAR`/`${VAR}` expanded from
  the pipeline's variables (the request's, the project's, the predefined ones); an empty result leaves the
  pipeline unnamed (null), and names are cut to 255 characters
  (https://docs.gitlab.com/ci/yaml/#workflowname). List project pipelines filters on it exactly with
  `name=` (https://docs.gitlab.com/api/pipelines/#list-project-pipelines).
- `GET /personal_access_tokens/self` describes the token of the request, with its `expires_at`
  (https://docs.gitlab.com/api/personal_access_tokens/#get-single-personal-access-token); an expired token
  is refused with 401 like any invalid one.
- A job with `environment:` records a deployment of its pipeline's commit to that environment; a
  successful one sets the environment's external_url from `environment:url`, expanded with the job's
  dotenv report (https://docs.gitlab.com/ci/environments/#set-a-dynamic-environment-url).
"""

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

import yaml

from .exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    MissingParameter,
    NotAcceptable,
    NotFound,
    PipelineRefused,
    ValidationFailed,
)
from .gitrepo import ZERO_SHA, FileAction, GitFailed, GitRepo
from .runner import JobSpec, PipelineConfigError, PipelineFiltered, PipelineRunner, RunContext

OVERRIDE_ROLES = ("no_one_allowed", "developer", "maintainer", "owner")
VISIBILITIES = ("private", "internal", "public")
PIPELINE_SOURCES = ("push", "web", "api", "trigger", "schedule", "pipeline", "merge_request_event")
MR_EVENT = "merge_request_event"
REPORTER, DEVELOPER, MAINTAINER, OWNER = 20, 30, 40, 50
TOKEN_SCOPES = ("api", "read_api", "read_repository", "write_repository")
MAX_OPEN_MRS_LISTED = 4  # CI_OPEN_MERGE_REQUESTS lists up to four
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
            "id": self.id,
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "full_path": self.full_path,
            "full_name": self.full_path.replace("/", " / "),
            "parent_id": self.parent_id,
            "web_url": f"{base_url}/{self.full_path}",
            "visibility": "private",
            "description": "",
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
            "key": self.key,
            "value": None if self.hidden else self.value,
            "variable_type": self.variable_type,
            "protected": self.protected,
            "masked": self.masked,
            "hidden": self.hidden,
            "raw": self.raw,
            "environment_scope": self.environment_scope,
            "description": self.description,
        }


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the admin (any project) or a project access token's bot (one project)."""

    user: Mapping[str, Any]
    scopes: frozenset[str]
    access_level: int
    project_id: int | None = None  # None: every project
    token: AccessToken | None = None  # the project access token, None for an admin token

    def may_read_api(self) -> bool:
        return bool(self.scopes & {"api", "read_api"})

    def may_write_api(self) -> bool:
        return "api" in self.scopes

    def may_read_code(self) -> bool:
        reads = {"api", "read_repository", "write_repository"}
        return bool(self.scopes & reads) and self.access_level >= REPORTER

    def may_push_code(self) -> bool:
        return bool(self.scopes & {"api", "write_repository"}) and self.access_level >= DEVELOPER


@dataclass
class AccessToken:
    id: int
    project_id: int
    name: str
    token: str
    scopes: tuple[str, ...]
    access_level: int
    user: dict[str, Any]
    expires_at: str | None
    created_at: str = field(default_factory=now)
    revoked: bool = False

    def to_json(self, with_token: bool = False) -> dict[str, Any]:
        data = {
            "id": self.id,
            "name": self.name,
            "revoked": self.revoked,
            "created_at": self.created_at,
            "scopes": list(self.scopes),
            "user_id": self.user["id"],
            "active": not self.revoked,
            "expires_at": self.expires_at,
            "access_level": self.access_level,
        }
        if with_token:
            data["token"] = self.token
        return data


@dataclass
class Note:
    id: int
    body: str
    author: Mapping[str, Any]
    noteable_id: int
    noteable_iid: int
    project_id: int
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    system: bool = False


@dataclass
class MergeRequest:
    id: int
    iid: int
    project_id: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author: Mapping[str, Any]
    sha: str
    state: str = "opened"  # opened | closed | merged
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    merged_at: str | None = None
    closed_at: str | None = None
    merge_commit_sha: str | None = None
    notes: list[Note] = field(default_factory=list)

    @property
    def ref_path(self) -> str:
        return f"refs/merge-requests/{self.iid}/head"


@dataclass
class Deployment:
    id: int
    iid: int
    environment_id: int
    job_id: int
    pipeline_id: int
    ref: str
    sha: str
    status: str
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)


@dataclass
class Environment:
    id: int
    project_id: int
    name: str
    external_url: str | None = None
    tier: str | None = None
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:24] or "env"


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
    environment: str | None = None
    environment_url: str | None = None


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
    merge_request_iid: int | None = None
    before_sha: str = ZERO_SHA
    name: str | None = None


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
            "id": self.id,
            "name": self.name,
            "push_access_levels": levels(self.push_access_level),
            "merge_access_levels": levels(self.merge_access_level),
            "allow_force_push": False,
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
        return {
            "id": self.id,
            "token": self.token if show_token else self.token[:4],
            "description": self.description,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "last_used": None,
            "owner": {"id": 1, "username": "root"},
        }


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
    merge_requests: dict[int, MergeRequest] = field(default_factory=dict)
    environments: dict[str, Environment] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)

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
        job_log_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.tokens = tuple(tokens)
        self.token_expires_at: str | None = None  # ISO date the admin tokens expire; None: never
        self.job_log_dir = job_log_dir
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
            self._next_id = {
                "namespace": 1,
                "project": 1,
                "pipeline": 1,
                "job": 1,
                "token": 1,
                "mr": 1,
                "note": 1,
                "environment": 1,
                "deployment": 1,
                "bot": 1000,
            }
            self.access_tokens: dict[str, AccessToken] = {}
            self.namespaces: dict[int, Namespace] = {}
            self.projects: dict[int, Project] = {}
            self.pipelines: dict[int, Pipeline] = {}
            self.jobs: dict[int, Job] = {}
            for sub in ("repos", "pipelines"):
                shutil.rmtree(self.data_dir / sub, ignore_errors=True)
                (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
            ns = self._new_namespace(self.username, self.username, None, "user")
            self.user = {
                "id": 1,
                "username": self.username,
                "name": "Standin User",
                "state": "active",
                "email": f"{self.username}@example.invalid",
                "namespace_id": ns.id,
                "is_admin": True,
                "bot": False,
            }
            self.user_namespace = ns
            for group in self._seed_groups:
                self.create_group(group)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait for background work (pushes, pipelines, and the pipelines those start): tests; shutdown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [t for t in list(self._threads) if t.is_alive() and t is not threading.current_thread()]
            if not alive:
                return
            for thread in alive:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _id(self, kind: str) -> int:
        value = self._next_id.get(kind, 1)
        self._next_id[kind] = value + 1
        return value

    # --- authentication ------------------------------------------------------------------------
    def authenticate(self, token: str) -> Principal | None:
        """The principal a token acts as (admin tokens given at start, or a live project access token)."""
        if not token:
            return None
        if any(secrets.compare_digest(token, t) for t in self.tokens):
            if self.token_expires_at and self.token_expires_at < datetime.now(UTC).date().isoformat():
                return None
            return Principal(self.user, frozenset(TOKEN_SCOPES), OWNER)
        with self.lock:
            found = next(
                (t for t in self.access_tokens.values() if secrets.compare_digest(token, t.token)), None
            )
            if found is None or found.revoked or found.project_id not in self.projects:
                return None
            if found.expires_at and found.expires_at < datetime.now(UTC).date().isoformat():
                return None
            return Principal(
                found.user, frozenset(found.scopes), found.access_level, found.project_id, found
            )

    def create_access_token(
        self, project: Project, name: str, scopes: Sequence[str], access_level: int, expires_at: str | None
    ) -> AccessToken:
        """A project access token: its bot user is a member of `project` only."""
        if not name:
            raise MissingParameter("name")
        if not scopes:
            raise MissingParameter("scopes")
        unknown = [s for s in scopes if s not in TOKEN_SCOPES]
        if unknown:
            raise BadRequest(f"scopes does not have a valid value: {', '.join(unknown)}")
        if access_level not in (REPORTER, DEVELOPER, MAINTAINER, OWNER):
            raise BadRequest("access_level does not have a valid value")
        with self.lock:
            bot_id = self._id("bot")
            user = {
                "id": bot_id,
                "username": f"project_{project.id}_bot_{secrets.token_hex(4)}",
                "name": name,
                "state": "active",
                "bot": True,
                "is_admin": False,
            }
            token = AccessToken(
                self._id("token"),
                project.id,
                name,
                f"glpat-{secrets.token_urlsafe(15)}",
                tuple(scopes),
                access_level,
                user,
                expires_at,
            )
            self.access_tokens[token.token] = token
            return token

    def access_tokens_of(self, project: Project) -> list[AccessToken]:
        with self.lock:
            return [t for t in self.access_tokens.values() if t.project_id == project.id]

    # --- users, groups, namespaces ------------------------------------------------------------
    def current_user(self, principal: Principal | None = None) -> dict[str, Any]:
        user = dict(principal.user) if principal else dict(self.user)
        return {**user, "web_url": f"{self.base_url}/{user['username']}"}

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
                pid,
                name,
                path,
                ns,
                repo,
                description=description,
                topics=list(topics or []),
                default_branch=branch,
                visibility=visibility or "private",
                ci_pipeline_variables_minimum_override_role=role,
                restrict_user_defined_variables=role == "no_one_allowed",
            )
            self.projects[pid] = project
            if initialize_with_readme:
                repo.commit(
                    branch,
                    "Initial commit",
                    [FileAction("create", "README.md", f"# {name}\n".encode())],
                    None,
                )
            return project

    def update_project(self, project: Project, changes: Mapping[str, Any]) -> Project:
        with self.lock:
            if "path" in changes and changes["path"] and changes["path"] != project.path:
                new_path = str(changes["path"])
                clash = any(
                    p.namespace.id == project.namespace.id
                    and p.id != project.id
                    and p.path.casefold() == new_path.casefold()
                    for p in self.projects.values()
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
            for token in self.access_tokens_of(project):
                token.revoked = True
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
        self.pushed(project, [(branch, branches.get(branch, ZERO_SHA), sha)])
        return sha

    def pushed(self, project: Project, updates: Sequence[tuple[str, str, str]]) -> None:
        """Branch updates (branch, before, after), from `git push` or the commits API, as GitLab handles a
        push: open merge requests from the branch follow it, then the branch pipeline and one merge request
        pipeline per such request are created (each only if its rules select jobs)."""
        for branch, before, after in updates:
            with self.lock:
                if after == ZERO_SHA:
                    continue  # a deleted branch starts nothing
                open_mrs = self._open_mrs_from(project, branch)
                for mr in open_mrs:
                    mr.sha, mr.updated_at = after, now()
                    project.repo.set_ref(mr.ref_path, after)
                project.last_activity_at = now()
            if not (self.pipelines_on_push and self.runner is not None):
                continue
            self._start_push_pipeline(project, branch, after, before)
            for mr in open_mrs:
                self._start_mr_pipeline(project, mr, refuse=False)

    def _open_mrs_from(self, project: Project, branch: str) -> list[MergeRequest]:
        return [
            mr
            for mr in project.merge_requests.values()
            if mr.state == "opened" and mr.source_branch == branch
        ]

    def in_background(self, work: Any, name: str) -> None:
        """Run `work` in a tracked thread (GitLab handles pushes asynchronously, after answering git)."""

        def target() -> None:
            try:
                work()
            except Exception:  # noqa: BLE001 - a background failure must not kill the server
                import traceback

                traceback.print_exc()

        thread = threading.Thread(target=target, name=name, daemon=True)
        with self.lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    # --- branches -----------------------------------------------------------------------------
    def create_branch(self, project: Project, branch: str, ref: str) -> str:
        if not branch:
            raise MissingParameter("branch")
        if not ref:
            raise MissingParameter("ref")
        with self.lock:
            if branch in project.repo.branches():
                raise BadRequest("Branch already exists")
            if not re.fullmatch(r"[A-Za-z0-9._/-]+", branch) or ".." in branch or branch.endswith((".", "/")):
                raise BadRequest("Branch name is invalid")
            sha = project.repo.resolve(ref)
            if sha is None:
                raise BadRequest("Invalid reference name: " + ref)
            project.repo.create_branch(branch, sha)
        self.pushed(project, [(branch, ZERO_SHA, sha)])
        return sha

    def delete_branch(self, project: Project, branch: str) -> None:
        with self.lock:
            if branch not in project.repo.branches():
                raise NotFound("Branch")
            if branch == project.default_branch:
                raise BadRequest("The default branch of a project cannot be deleted.")
            project.repo.delete_branch(branch)

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
            if (
                variables
                and project.restrict_user_defined_variables
                and (project.ci_pipeline_variables_minimum_override_role == "no_one_allowed")
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

    def _start_push_pipeline(self, project: Project, branch: str, sha: str, before: str = ZERO_SHA) -> None:
        with self.lock:
            try:
                project.repo.blob(sha, ".gitlab-ci.yml")
            except NotFound:
                return
            pipeline = self._new_pipeline(project, branch, sha, "push", [], before=before)
        self._plan_and_start(project, pipeline, refuse=False)

    def _start_mr_pipeline(self, project: Project, mr: MergeRequest, *, refuse: bool) -> Pipeline | None:
        with self.lock:
            try:
                project.repo.blob(mr.sha, ".gitlab-ci.yml")
            except NotFound:
                if refuse:
                    raise PipelineRefused("Missing CI config file") from None
                return None
            pipeline = self._new_pipeline(project, mr.ref_path, mr.sha, MR_EVENT, [], merge_request=mr)
        started = self._plan_and_start(project, pipeline, refuse=refuse)
        return started if started.id in self.pipelines else None

    def _new_pipeline(
        self,
        project: Project,
        ref: str,
        sha: str,
        source: str,
        variables: Sequence[Mapping[str, Any]],
        *,
        before: str = ZERO_SHA,
        merge_request: MergeRequest | None = None,
    ) -> Pipeline:
        project.pipeline_count += 1
        pipeline = Pipeline(
            self._id("pipeline"),
            project.pipeline_count,
            project.id,
            ref,
            sha,
            source,
            [
                {
                    "key": str(v.get("key")),
                    "value": str(v.get("value", "")),
                    "variable_type": str(v.get("variable_type") or "env_var"),
                }
                for v in variables
            ],
            merge_request_iid=merge_request.iid if merge_request else None,
            before_sha=before if source == "push" else ZERO_SHA,
        )
        pipe_vars = {v["key"]: v["value"] for v in pipeline.variables}
        # Protected variables reach only pipelines of protected branches (GitLab docs, CI/CD variables:
        # "Protect a CI/CD variable"); a merge request pipeline counts as protected only when both its
        # source and target branches are (gitlab-org/gitlab!188008, protect_merge_request_pipelines, on
        # by default for new projects).
        protected_ref = self.ref_is_protected(project, ref, merge_request)
        proj_vars = {
            v.key: v.value
            for v in project.variables.values()
            if v.environment_scope == "*" and (protected_ref or not v.protected)
        }
        file_vars = {v.key for v in project.variables.values() if v.variable_type == "file"}
        file_vars |= {v["key"] for v in pipeline.variables if v["variable_type"] == "file"}
        predefined, unset, ref_name = self._predefined(project, pipeline, merge_request)
        pipeline.context = RunContext(
            pipeline_id=pipeline.id,
            project_id=project.id,
            project_path=project.full_path,
            default_branch=project.default_branch,
            repo_dir=project.repo.path,
            ref=ref,
            sha=sha,
            source=source,
            work_dir=self.data_dir / "pipelines" / str(pipeline.id),
            server_url=self.base_url,
            variables={**proj_vars, **pipe_vars},
            file_variables=frozenset(file_vars),
            ref_protected=protected_ref,
            ref_name=ref_name,
            predefined=predefined,
            unset=unset,
        )
        pipeline.name = workflow_name(project.repo, sha, {**predefined, **proj_vars, **pipe_vars})
        return pipeline

    def ref_is_protected(self, project: Project, ref: str, mr: MergeRequest | None) -> bool:
        """Whether a pipeline on `ref` is protected (GitLab's Ci::Pipeline#protected_ref?)."""
        if mr is not None:
            return {mr.source_branch, mr.target_branch} <= set(project.protected_branches)
        return ref.removeprefix("refs/heads/") in project.protected_branches

    def _predefined(
        self, project: Project, pipeline: Pipeline, mr: MergeRequest | None
    ) -> tuple[dict[str, str], frozenset[str], str]:
        """Predefined variables GitLab gives this pipeline, the ones it leaves unset, and the ref name
        (https://docs.gitlab.com/ci/variables/predefined_variables/)."""
        info = project.repo.commit_info(pipeline.sha)
        project_url = f"{self.base_url}/{project.full_path}"
        branch = mr.source_branch if mr else pipeline.ref.removeprefix("refs/heads/")
        values = {
            "CI_COMMIT_SHA": pipeline.sha,
            "CI_COMMIT_SHORT_SHA": pipeline.sha[:8],
            "CI_COMMIT_BEFORE_SHA": pipeline.before_sha,
            "CI_COMMIT_REF_NAME": branch,
            "CI_COMMIT_MESSAGE": info.message,
            "CI_COMMIT_TITLE": info.title,
            "CI_COMMIT_DESCRIPTION": info.message[len(info.title) :].lstrip("\n"),
            "CI_COMMIT_AUTHOR": f"{info.author_name} <{info.author_email}>",
            "CI_COMMIT_TIMESTAMP": info.committed_date,
            "CI_PIPELINE_IID": str(pipeline.iid),
            "CI_PIPELINE_URL": f"{project_url}/-/pipelines/{pipeline.id}",
            "CI_PROJECT_URL": project_url,
        }
        open_mrs = self._open_mrs_from(project, branch)[:MAX_OPEN_MRS_LISTED]
        if open_mrs:
            values["CI_OPEN_MERGE_REQUESTS"] = ",".join(f"{project.full_path}!{m.iid}" for m in open_mrs)
        if mr is None:
            values["CI_COMMIT_BRANCH"] = branch
            return values, frozenset(), branch
        base = project.repo.merge_base(project.repo.branches().get(mr.target_branch, mr.sha), mr.sha)
        values.update(
            {
                "CI_MERGE_REQUEST_ID": str(mr.id),
                "CI_MERGE_REQUEST_IID": str(mr.iid),
                "CI_MERGE_REQUEST_PROJECT_ID": str(project.id),
                "CI_MERGE_REQUEST_PROJECT_PATH": project.full_path,
                "CI_MERGE_REQUEST_PROJECT_URL": project_url,
                "CI_MERGE_REQUEST_REF_PATH": mr.ref_path,
                "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": mr.source_branch,
                "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": str(project.id),
                "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": project.full_path,
                "CI_MERGE_REQUEST_SOURCE_PROJECT_URL": project_url,
                "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": mr.target_branch,
                "CI_MERGE_REQUEST_TITLE": mr.title,
                "CI_MERGE_REQUEST_DESCRIPTION": mr.description,
                "CI_MERGE_REQUEST_EVENT_TYPE": "detached",
                "CI_MERGE_REQUEST_DIFF_BASE_SHA": base or "",
            }
        )
        return values, frozenset({"CI_COMMIT_BRANCH"}), branch

    def _plan_and_start(self, project: Project, pipeline: Pipeline, *, refuse: bool) -> Pipeline:
        """Ask the runner which jobs run (outside the lock: it may take a second), then start them."""
        runner, ctx = self.runner, pipeline.context
        if runner is None or ctx is None:
            with self.lock:
                self.pipelines[pipeline.id] = pipeline
            return pipeline
        try:
            specs = runner.plan(ctx)
        except PipelineFiltered as e:
            shutil.rmtree(ctx.work_dir, ignore_errors=True)
            if refuse:
                raise PipelineRefused(str(e)) from None
            return pipeline  # a push filtered out by workflow:rules creates no pipeline
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
        job = Job(
            self._id("job"),
            spec.name,
            spec.stage,
            spec.when,
            spec.allow_failure,
            status,
            pipeline.id,
            environment=spec.environment,
            environment_url=spec.environment_url,
        )
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

        self.in_background(target, f"pipeline-{pipeline.id}")

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

    def list_pipelines(
        self,
        project: Project,
        ref: str | None = None,
        status: str | None = None,
        source: str | None = None,
        name: str | None = None,
    ) -> list[Pipeline]:
        with self.lock:
            found = [p for p in self.pipelines.values() if p.project_id == project.id]
            found = [
                p
                for p in found
                if (not ref or p.ref == ref)
                and (not status or p.status == status)
                and (not source or p.source == source)
                and (not name or p.name == name)
            ]
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

    # --- merge requests and notes ---------------------------------------------------------------
    def create_merge_request(
        self,
        project: Project,
        author: Mapping[str, Any],
        *,
        source_branch: str,
        target_branch: str,
        title: str,
        description: str = "",
    ) -> MergeRequest:
        missing = [
            k
            for k, v in (("source_branch", source_branch), ("target_branch", target_branch), ("title", title))
            if not v
        ]
        if missing:
            raise MissingParameter(*missing)
        with self.lock:
            branches = project.repo.branches()
            if source_branch == target_branch:
                raise ValidationFailed({"base": ["You can't use same project/branch for source and target"]})
            for kind, name in (("Source", source_branch), ("Target", target_branch)):
                if name not in branches:
                    raise ValidationFailed({"base": [f'{kind} branch "{name}" does not exist']})
            duplicate = next(
                (m for m in self._open_mrs_from(project, source_branch) if m.target_branch == target_branch),
                None,
            )
            if duplicate is not None:
                raise Conflict(
                    f"Another open merge request already exists for this source branch: !{duplicate.iid}"
                )
            iid = max(project.merge_requests, default=0) + 1
            mr = MergeRequest(
                self._id("mr"),
                iid,
                project.id,
                title,
                description or "",
                source_branch,
                target_branch,
                dict(author),
                branches[source_branch],
            )
            project.merge_requests[iid] = mr
            project.repo.set_ref(mr.ref_path, mr.sha)
        if self.pipelines_on_push and self.runner is not None:
            self.in_background(lambda: self._start_mr_pipeline(project, mr, refuse=False), f"mr-{mr.id}")
        return mr

    def merge_request(self, project: Project, iid: str | int) -> MergeRequest:
        with self.lock:
            mr = project.merge_requests.get(int(iid)) if str(iid).isdigit() else None
            if mr is None:
                raise NotFound("")
            return mr

    def list_merge_requests(
        self,
        project: Project,
        state: str | None = None,
        source_branch: str | None = None,
        target_branch: str | None = None,
    ) -> list[MergeRequest]:
        with self.lock:
            found = [
                m
                for m in project.merge_requests.values()
                if state in (None, "", "all", m.state)
                and source_branch in (None, "", m.source_branch)
                and target_branch in (None, "", m.target_branch)
            ]
            return sorted(found, key=lambda m: m.id, reverse=True)

    def update_merge_request(
        self, project: Project, mr: MergeRequest, changes: Mapping[str, Any]
    ) -> MergeRequest:
        with self.lock:
            if changes.get("title"):
                mr.title = str(changes["title"])
            if changes.get("description") is not None:
                mr.description = str(changes["description"])
            event = changes.get("state_event")
            if event == "close" and mr.state == "opened":
                mr.state, mr.closed_at = "closed", now()
            elif event == "reopen" and mr.state == "closed":
                mr.state, mr.closed_at = "opened", None
            elif event not in (None, "", "close", "reopen"):
                raise BadRequest("state_event does not have a valid value")
            mr.updated_at = now()
            return mr

    def merge(
        self,
        project: Project,
        mr: MergeRequest,
        *,
        sha: str | None = None,
        message: str | None = None,
        remove_source_branch: bool = False,
    ) -> MergeRequest:
        """Merge with a merge commit (GitLab's default merge method) and start the target's push pipeline."""
        with self.lock:
            if project.archived:
                raise Forbidden()
            if mr.state != "opened":
                raise MethodNotAllowed("405 Method Not Allowed")
            branches = project.repo.branches()
            source, target = branches.get(mr.source_branch), branches.get(mr.target_branch)
            if source is None or target is None:
                raise MethodNotAllowed("405 Method Not Allowed")
            if sha and sha != source:
                raise Conflict("SHA does not match HEAD of source branch: " + source)
            text = message or default_merge_message(project, mr)
            merged = project.repo.merge_commit(target, source, text, mr.target_branch)
            if merged is None:
                raise NotAcceptable("Branch cannot be merged")
            mr.state, mr.merged_at, mr.merge_commit_sha, mr.updated_at = "merged", now(), merged, now()
            if remove_source_branch and mr.source_branch != project.default_branch:
                project.repo.delete_branch(mr.source_branch)
        self.pushed(project, [(mr.target_branch, target, merged)])
        return mr

    def create_mr_pipeline(self, project: Project, mr: MergeRequest) -> Pipeline:
        """POST .../merge_requests/:iid/pipelines: a merge request pipeline now (refused like the API)."""
        if self.runner is None:
            with self.lock:
                pipeline = self._new_pipeline(project, mr.ref_path, mr.sha, MR_EVENT, [], merge_request=mr)
                self.pipelines[pipeline.id] = pipeline
                return pipeline
        started = self._start_mr_pipeline(project, mr, refuse=True)
        assert started is not None
        return started

    def mr_pipelines(self, project: Project, mr: MergeRequest) -> list[Pipeline]:
        with self.lock:
            return [p for p in self.list_pipelines(project) if p.merge_request_iid == mr.iid]

    def add_note(self, project: Project, mr: MergeRequest, author: Mapping[str, Any], body: str) -> Note:
        if not body or not str(body).strip():
            raise MissingParameter("body")
        if len(body) > 1_000_000:
            raise ValidationFailed({"note": ["is too long (maximum is 1000000 characters)"]})
        with self.lock:
            note = Note(self._id("note"), body, dict(author), mr.id, mr.iid, project.id)
            mr.notes.append(note)
            return note

    def note(self, mr: MergeRequest, note_id: str | int) -> Note:
        with self.lock:
            found = next((n for n in mr.notes if str(n.id) == str(note_id)), None)
            if found is None:
                raise NotFound("Note")
            return found

    def update_note(self, mr: MergeRequest, note: Note, author: Mapping[str, Any], body: str) -> Note:
        if not body or not str(body).strip():
            raise MissingParameter("body")
        with self.lock:
            if note.author.get("id") != author.get("id") and not author.get("is_admin"):
                raise Forbidden()
            note.body, note.updated_at = body, now()
            return note

    def delete_note(self, mr: MergeRequest, note: Note, author: Mapping[str, Any]) -> None:
        with self.lock:
            if note.author.get("id") != author.get("id") and not author.get("is_admin"):
                raise Forbidden()
            mr.notes.remove(note)

    # --- environments and deployments -----------------------------------------------------------
    def _record_deployment(
        self, pipeline: Pipeline, job: Job, status: str, dotenv: Mapping[str, str]
    ) -> None:
        project = self.projects.get(pipeline.project_id)
        if project is None or not job.environment:
            return
        values = {
            **(pipeline.context.variables if pipeline.context else {}),
            **(pipeline.context.predefined if pipeline.context else {}),
            **dotenv,
        }
        name = expand_variables(job.environment, values)
        env = project.environments.get(name)
        if env is None:
            env = Environment(self._id("environment"), project.id, name)
            project.environments[name] = env
        if status == "success" and job.environment_url:
            env.external_url = expand_variables(job.environment_url, values) or env.external_url
        env.updated_at = now()
        iid = len(project.deployments) + 1
        project.deployments.append(
            Deployment(
                self._id("deployment"), iid, env.id, job.id, pipeline.id, pipeline.ref, pipeline.sha, status
            )
        )

    def environments(self, project: Project, name: str | None = None) -> list[Environment]:
        with self.lock:
            return [e for e in project.environments.values() if name in (None, "", e.name)]

    def environment(self, project: Project, env_id: str | int) -> Environment:
        with self.lock:
            found = next((e for e in project.environments.values() if str(e.id) == str(env_id)), None)
            if found is None:
                raise NotFound("Environment")
            return found

    def deployments(
        self, project: Project, environment: str | None = None, status: str | None = None
    ) -> list[Deployment]:
        with self.lock:
            env_ids = {e.id for e in project.environments.values() if environment in (None, "", e.name)}
            return [
                d
                for d in project.deployments
                if d.environment_id in env_ids and status in (None, "", d.status)
            ]

    def last_deployment(self, project: Project, env: Environment) -> Deployment | None:
        with self.lock:
            done = [d for d in project.deployments if d.environment_id == env.id and d.status == "success"]
            return done[-1] if done else None

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


MAX_PIPELINE_NAME = 255
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class _CiLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML loader for CI files: GitLab's own tags (`!reference`) load as plain values."""


_CiLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def workflow_name(repo: GitRepo, sha: str, variables: Mapping[str, str]) -> str | None:
    """The pipeline name `workflow:name` of the CI file at `sha` gives, expanded; None when unnamed."""
    try:
        config = yaml.load(repo.blob(sha, ".gitlab-ci.yml")[1], Loader=_CiLoader)  # noqa: S506 - safe loader
    except (NotFound, yaml.YAMLError):
        return None
    workflow = config.get("workflow") if isinstance(config, dict) else None
    template = workflow.get("name") if isinstance(workflow, dict) else None
    if not isinstance(template, str):
        return None
    name = _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), template).strip()
    return name[:MAX_PIPELINE_NAME] or None


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

    def job_finished(self, name: str, status: str, log: str, dotenv: Mapping[str, str] | None = None) -> None:
        with self.backend.lock:
            job = self._job(name)
            if job is None:
                return
            for secret in self.backend.masked_values(self.pipeline):
                log = log.replace(secret, MASK)
            job.status, job.log, job.finished_at = status, log, now()
            job.started_at = job.started_at or job.finished_at
            job.duration = round(time.monotonic() - job._t0, 3) if job._t0 else 0.0
            self.backend._record_deployment(self.pipeline, job, status, dotenv or {})
            self.backend._refresh(self.pipeline)
            self._keep_log(job)

    def _keep_log(self, job: Job) -> None:
        """Write the (masked) trace under the backend's job_log_dir, where the sandbox keeps CI logs."""
        folder = self.backend.job_log_dir
        project = self.backend.projects.get(self.pipeline.project_id)
        if folder is None or project is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{project.path}-{self.pipeline.id}-{job.name}.log").write_text(job.log)


def default_merge_message(project: Project, mr: MergeRequest) -> str:
    """GitLab's default merge commit template with its empty lines dropped (see the module docstring)."""
    return (
        f"Merge branch '{mr.source_branch}' into '{mr.target_branch}'\n\n{mr.title}\n\n"
        f"See merge request {project.full_path}!{mr.iid}"
    )


_VARIABLE_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand_variables(text: str, values: Mapping[str, str]) -> str:
    """`$VAR` and `${VAR}` replaced by their values (unknown ones by nothing), as GitLab expands URLs."""
    return _VARIABLE_REF.sub(lambda m: values.get(m.group(1) or m.group(2), ""), text)


ACCESS_LEVELS = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers", 60: "Admins"}


# GitLab's refusals for protected branches (gitlab-org/gitlab lib/gitlab/checks/branch_check.rb, and the
# commits API's 403 "You are not allowed to push into this branch").
PUSH_PROTECTED = "You are not allowed to push code to protected branches on this project."
FORCE_PUSH_PROTECTED = "You are not allowed to force push code to a protected branch on this project."
DELETE_PROTECTED = "You can only delete protected branches using the web interface."
COMMIT_PROTECTED = "You are not allowed to push into this branch"
ADMIN_LEVEL = 60  # the instance administrator (the stand-in's own token owner)


def effective_level(principal: Principal | None) -> int:
    """The access level protected-branch rules compare: the admin token acts as the instance admin."""
    if principal is None:
        return 0
    return ADMIN_LEVEL if principal.project_id is None else principal.access_level


def level_allows(required: int, level: int) -> bool:
    """GitLab's access-level check: 0 is "No one", otherwise the role must reach the level."""
    return required != 0 and level >= required


class Protection:
    """Protected branches and pipeline triggers of the stand-in's projects, as GitLab's API has them.

    Protected branches (https://docs.gitlab.com/api/protected_branches/): POST protects a branch (409
    "Protected branch '<name>' already exists" when it is), DELETE unprotects it, GET lists or shows one
    (404 "Not found"); levels 0/30/40/60. Pipeline triggers (https://docs.gitlab.com/api/pipeline_triggers/):
    list, create (the response carries the token), delete; POST /projects/:id/trigger/pipeline with
    `token`, `ref` and `variables[KEY]` starts a pipeline with source "trigger" as the trigger's owner,
    without a private token, and answers 404 for a token of another project or a revoked one.
    What a protected branch refuses (https://docs.gitlab.com/user/project/repository/branches/protected/):
    a push (git or the commits API) by a role below its push level (git: PUSH_PROTECTED through the
    pre-receive hook, "pre-receive hook declined"; API: 403 COMMIT_PROTECTED), a force push and a delete
    over git whoever pushes (FORCE_PUSH_PROTECTED, DELETE_PROTECTED: force push is off by default), and a
    merge request merge into it by a role below its merge level (401, as the merge API documents).
    Level 0 is "No one"; the stand-in's admin token is the instance administrator (level 60).
    Left out: wildcard branch patterns, per-user/group access, allow_force_push, unprotect_access_level,
    code owners, trigger ownership by other users.
    """


def _check_variable(var: Variable) -> None:
    if var.variable_type not in ("env_var", "file"):
        raise BadRequest("variable_type does not have a valid value")
    if var.masked and not (_MASKABLE_RAW if var.raw else _MASKABLE).match(var.value or ""):
        raise ValidationFailed({"value": ["is invalid"]})


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_.]+", "-", name.strip()).strip("-").lower()
    return slug or "project"
