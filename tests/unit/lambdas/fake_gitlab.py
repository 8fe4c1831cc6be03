"""An in-memory `GitLabApi` for core unit tests: GitLab's state and its answers where the cores rely on
them (a taken name is `GitLabRejected`, a missing thing `GitLabNotFound`, pipelines found by name), and
faults to inject before or after a call takes effect (an answer lost after GitLab applied it)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

from mlops_common import contract
from mlops_common.errors import GitLabError, GitLabNotFound, GitLabOutOfTime, GitLabRejected
from mlops_common.gitlab_api import Namespace, Pipeline, ProjectInfo, TreeEntry, TriggerInfo, Variable
from mlops_common.gitlab_client import MIN_REQUEST_TIME

P = ParamSpec("P")
R = TypeVar("R")
EXECUTABLE, REGULAR = "100755", "100644"


@dataclass
class FakeProject:
    info: ProjectInfo
    namespace_id: int | None
    settings: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Variable] = field(default_factory=dict)
    branches: dict[str, dict[str, tuple[bytes, str]]] = field(default_factory=dict)  # path -> content, mode
    protected: dict[str, int] = field(default_factory=dict)  # branch -> push and merge level
    triggers: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> description, token
    access_tokens: dict[int, tuple[str, tuple[str, ...], int, dt.date]] = field(default_factory=dict)
    pipelines: list[tuple[Pipeline, str, str, dict[str, str]]] = field(default_factory=list)


@dataclass
class Fault:
    method: str
    error: GitLabError
    after: bool  # raised once the call took effect: an answer lost on the way back
    times: int | None  # None: every call


def blob_id(content: bytes) -> str:
    return hashlib.sha1(f"blob {len(content)}\0".encode() + content, usedforsecurity=False).hexdigest()


def _api(method: Callable[Concatenate[FakeGitLab, P], R]) -> Callable[Concatenate[FakeGitLab, P], R]:
    """Record the call, honour the deadline as the adapter does, and raise the faults queued for it."""

    def call(self: FakeGitLab, /, *args: P.args, **kwargs: P.kwargs) -> R:
        name = method.__name__
        self.calls.append(name)
        if self.deadline is not None and self.deadline - time.monotonic() <= MIN_REQUEST_TIME:
            raise GitLabOutOfTime(f"GitLab at {self.url} too slow: out of time before the Lambda timeout")
        self._raise_fault(name, after=False)
        result = method(self, *args, **kwargs)
        self._raise_fault(name, after=True)
        return result

    return call


class FakeGitLab:
    """One GitLab server seen through one token (user `username`); see the module docstring."""

    def __init__(
        self,
        url: str = "https://gitlab.example.com",
        username: str = "alice",
        token_expires: dt.date | None = None,
        deadline: float | None = None,
    ) -> None:
        self._url, self.username, self.token_expires, self.deadline = url, username, token_expires, deadline
        self.groups: dict[str, Namespace] = {}
        self.projects: dict[int, FakeProject] = {}
        self.calls: list[str] = []
        self.faults: list[Fault] = []
        self._ids = itertools.count(10)

    # --- test set-up and inspection ------------------------------------------------------------------
    def add_group(self, full_path: str) -> Namespace:
        group = Namespace(next(self._ids), full_path)
        self.groups[full_path] = group
        return group

    def add_project(self, path: str, topics: Sequence[str] = (), archived: bool = False) -> FakeProject:
        """A project someone made earlier, e.g. a foreign one with the name we want."""
        namespace = path.rpartition("/")[0]
        group = self.groups.get(namespace)
        owner = group.id if group else None
        return self._new_project(owner, path, "", topics, archived)

    def fail(self, method: str, error: GitLabError, *, after: bool = False, times: int | None = 1) -> None:
        """Raise `error` from the next `times` calls of `method` (None: all), before or after its effect."""
        self.faults.append(Fault(method, error, after, times))

    def project(self, path: str) -> FakeProject:
        return next(p for p in self.projects.values() if p.info.path_with_namespace == path)

    def files(self, project_id: int, branch: str) -> dict[str, bytes]:
        return {path: content for path, (content, _) in self.projects[project_id].branches[branch].items()}

    def _raise_fault(self, method: str, *, after: bool) -> None:
        for fault in self.faults:
            if fault.method == method and fault.after == after and fault.times != 0:
                if fault.times is not None:
                    fault.times -= 1
                raise fault.error

    def _new_project(
        self, namespace_id: int | None, path: str, description: str, topics: Sequence[str], archived: bool
    ) -> FakeProject:
        pid = next(self._ids)
        info = ProjectInfo(
            id=pid,
            path_with_namespace=path,
            http_url_to_repo=f"{self._url}/{path}.git",
            web_url=f"{self._url}/{path}",
            description=description,
            default_branch=None,
            archived=archived,
            topics=tuple(topics),
        )
        self.projects[pid] = FakeProject(info, namespace_id)
        return self.projects[pid]

    def _project(self, project_id: int) -> FakeProject:
        if project_id not in self.projects:
            raise GitLabNotFound(f"GitLab project {project_id} not found (404)")
        return self.projects[project_id]

    # --- GitLabApi: connection ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self._url

    @property
    def host(self) -> str:
        return urlsplit(self._url).netloc

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline

    # --- GitLabApi: token and namespaces -------------------------------------------------------------
    @_api
    def token_expiry(self) -> dt.date | None:
        return self.token_expires

    @_api
    def token_owner_namespace(self) -> Namespace:
        return Namespace(None, self.username)

    @_api
    def group(self, ref: str) -> Namespace:
        found = [g for g in self.groups.values() if ref in (g.full_path, str(g.id))]
        if not found:
            raise GitLabNotFound(f"GitLab group '{ref}' not found (404): check the GitLabGroup parameter")
        return found[0]

    # --- GitLabApi: projects --------------------------------------------------------------------------
    @_api
    def find_project(self, path_or_id: str | int) -> ProjectInfo | None:
        for project in self.projects.values():
            if path_or_id in (project.info.id, project.info.path_with_namespace):
                return project.info
        return None

    @_api
    def create_project(
        self, namespace: Namespace, name: str, description: str, topics: Sequence[str]
    ) -> ProjectInfo:
        if namespace.id is not None and namespace not in self.groups.values():
            raise GitLabNotFound(f"GitLab namespace '{namespace.full_path}' not found (404)")
        path = f"{namespace.full_path}/{name}"
        if any(p.info.path_with_namespace == path for p in self.projects.values()):
            raise GitLabRejected(
                f"GitLab refused creating project '{path}' (400: path has already been taken)"
            )
        return self._new_project(namespace.id, path, description, topics, False).info

    @_api
    def update_project(self, project_id: int, changes: Mapping[str, Any]) -> None:
        project = self._project(project_id)
        info_changes = {k: v for k, v in changes.items() if k in ("description", "topics")}
        if "topics" in info_changes:
            info_changes["topics"] = tuple(info_changes["topics"])
        project.info = replace(project.info, **info_changes)
        project.settings.update({k: v for k, v in changes.items() if k not in info_changes})

    @_api
    def archive_project(self, project_id: int) -> None:
        project = self._project(project_id)
        project.info = replace(project.info, archived=True)

    @_api
    def unarchive_project(self, project_id: int) -> None:
        project = self._project(project_id)
        project.info = replace(project.info, archived=False)

    @_api
    def delete_project(self, project_id: int) -> None:
        self._project(project_id)
        del self.projects[project_id]

    # --- GitLabApi: CI/CD variables ---------------------------------------------------------------------
    @_api
    def variables(self, project_id: int) -> dict[str, Variable]:
        return dict(self._project(project_id).variables)

    @_api
    def create_variable(self, project_id: int, variable: Variable) -> None:
        project = self._project(project_id)
        if variable.key in project.variables:
            raise GitLabRejected(
                f"GitLab refused creating CI/CD variable {variable.key} (400: key has already been taken)"
            )
        project.variables[variable.key] = variable

    @_api
    def update_variable(self, project_id: int, variable: Variable) -> None:
        project = self._project(project_id)
        if variable.key not in project.variables:
            raise GitLabNotFound(f"GitLab variable {variable.key} of project {project_id} not found (404)")
        project.variables[variable.key] = variable

    @_api
    def delete_variable(self, project_id: int, key: str) -> None:
        project = self._project(project_id)
        if project.variables.pop(key, None) is None:
            raise GitLabNotFound(f"GitLab variable {key} of project {project_id} not found (404)")

    # --- GitLabApi: repository ----------------------------------------------------------------------------
    @_api
    def branch_exists(self, project_id: int, branch: str) -> bool:
        return branch in self._project(project_id).branches

    @_api
    def tree(self, project_id: int, ref: str) -> list[TreeEntry]:
        files = self._project(project_id).branches.get(ref)
        if files is None:
            raise GitLabNotFound(f"GitLab branch {ref} of project {project_id} not found (404)")
        return [TreeEntry(path, blob_id(content), mode) for path, (content, mode) in sorted(files.items())]

    @_api
    def commit(self, project_id: int, branch: str, message: str, actions: Sequence[Mapping[str, Any]]) -> str:
        """Applies every action or none, like GitLab: a create of an existing file is refused."""
        project = self._project(project_id)
        files = dict(project.branches.get(branch, {}))
        for action in actions:
            kind, path = action["action"], str(action["file_path"])
            if kind == "chmod":
                content, _ = files[path]
                files[path] = (content, EXECUTABLE if action["execute_filemode"] else REGULAR)
                continue
            if (kind == "create") == (path in files):
                problem = "already exists" if kind == "create" else "does not exist"
                raise GitLabRejected(
                    f"GitLab refused committing to project {project_id} (400: {path} {problem})"
                )
            raw = str(action["content"])
            content = base64.b64decode(raw) if action.get("encoding") == "base64" else raw.encode()
            files[path] = (content, files.get(path, (b"", REGULAR))[1])
        project.branches[branch] = files
        if project.info.default_branch is None:
            project.info = replace(project.info, default_branch=branch)
        return hashlib.sha1(f"{project_id}{branch}{message}".encode(), usedforsecurity=False).hexdigest()

    @_api
    def protect_branch(self, project_id: int, branch: str, access_level: int) -> str:
        project = self._project(project_id)
        current = project.protected.get(branch)
        if current is not None and current >= access_level:
            return "already protected"
        project.protected[branch] = access_level
        return "tightened" if current is not None else "protected"

    # --- GitLabApi: tokens and triggers ------------------------------------------------------------------
    @_api
    def create_access_token(
        self, project_id: int, name: str, scopes: Sequence[str], access_level: int, expires_at: dt.date
    ) -> tuple[int, str]:
        project, token_id = self._project(project_id), next(self._ids)
        project.access_tokens[token_id] = (name, tuple(scopes), access_level, expires_at)
        return token_id, f"glpat-fake-{token_id}"

    @_api
    def revoke_access_token(self, project_id: int, token_id: int) -> None:
        if self._project(project_id).access_tokens.pop(token_id, None) is None:
            raise GitLabNotFound(f"GitLab token {token_id} not found (404)")

    @_api
    def triggers(self, project_id: int) -> list[TriggerInfo]:
        items = self._project(project_id).triggers.items()
        return [TriggerInfo(tid, description) for tid, (description, _) in items]

    @_api
    def create_trigger(self, project_id: int, description: str) -> tuple[TriggerInfo, str]:
        project, trigger_id = self._project(project_id), next(self._ids)
        token = f"glptt-fake-{trigger_id}"
        project.triggers[trigger_id] = (description, token)
        return TriggerInfo(trigger_id, description), token

    @_api
    def delete_trigger(self, project_id: int, trigger_id: int) -> None:
        if self._project(project_id).triggers.pop(trigger_id, None) is None:
            raise GitLabNotFound(f"GitLab trigger {trigger_id} not found (404)")

    # --- GitLabApi: pipelines ------------------------------------------------------------------------------
    @_api
    def pipelines_named(self, project_id: int, name: str) -> list[Pipeline]:
        started = self._project(project_id).pipelines
        return [pipeline for pipeline, named, _, _ in reversed(started) if named == name]

    @_api
    def run_trigger(self, project_id: int, ref: str, token: str, variables: Mapping[str, str]) -> Pipeline:
        """GitLab answers 404 to a token that is not one of the project's triggers. The pipeline is named
        by the deploy seed's `workflow:name`, i.e. from the pipeline-name variable passed here."""
        project = self._project(project_id)
        if token not in (t for _, t in project.triggers.values()):
            raise GitLabNotFound(f"GitLab project {project_id} or its branch {ref} not found (404)")
        if ref not in project.branches:
            raise GitLabRejected(
                f"GitLab refused starting a pipeline on {ref} (400: base Reference not found)"
            )
        pid = next(self._ids)
        pipeline = Pipeline(pid, f"{project.info.web_url}/-/pipelines/{pid}")
        name = variables.get(contract.PIPELINE_VAR_PIPELINE_NAME, "")
        project.pipelines.append((pipeline, name, ref, dict(variables)))
        return pipeline
