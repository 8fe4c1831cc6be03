"""Request handlers: read the parameters, call the backend, return GitLab-shaped JSON.

The JSON shapes follow GitLab's REST API reference: projects, commits, branches, pipelines and jobs
(https://docs.gitlab.com/api/), merge requests and their merge (https://docs.gitlab.com/api/merge_requests/),
notes (https://docs.gitlab.com/api/notes/#merge-requests), environments and deployments
(https://docs.gitlab.com/api/environments/, https://docs.gitlab.com/api/deployments/) and project access
tokens (https://docs.gitlab.com/api/project_access_tokens/), with the fields python-gitlab and the bundle
read. Roles follow GitLab's permissions table: Developer opens and merges merge requests and creates
branches, Reporter comments, Maintainer manages access tokens (https://docs.gitlab.com/user/permissions/).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from . import models
from .exceptions import BadRequest, Forbidden, MissingParameter, NotFound, Unauthorized
from .gitrepo import FileAction, decode_content, validate_file_path
from .models import (
    DEVELOPER,
    MAINTAINER,
    REPORTER,
    AccessToken,
    Backend,
    Deployment,
    Environment,
    Job,
    MergeRequest,
    Note,
    Pipeline,
    Principal,
    Project,
    Variable,
)

_TRUE = ("true", "1", "yes", "on")


@dataclass
class Request:
    method: str
    path: str  # raw, still percent-encoded, without the query string
    query: dict[str, list[str]]
    body: bytes
    headers: Any  # case-insensitive .get(), like http.client's HTTPMessage
    base_url: str  # how the client reached us (for Link headers)
    principal: Principal | None = None
    _params: dict[str, Any] | None = None

    @property
    def user(self) -> dict[str, Any]:
        return dict(self.principal.user) if self.principal else {}

    def need(self, level: int) -> None:
        """403 unless the caller has at least this role on the project (GitLab's permissions table)."""
        if self.principal is None or self.principal.access_level < level:
            raise Forbidden()

    @property
    def params(self) -> dict[str, Any]:
        """Query and body parameters merged, as Grape does (JSON or form bodies)."""
        if self._params is None:
            merged: dict[str, Any] = {}
            for source in (self.query, self._form()):
                for key, values in source.items():
                    if key.endswith("[]"):
                        merged[key[:-2]] = list(values)
                    else:
                        merged[key] = values[-1]
            merged.update(self._json())
            self._params = merged
        return self._params

    def _json(self) -> dict[str, Any]:
        if not self.body or "json" not in self.headers.get("Content-Type", "").lower():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as e:
            raise BadRequest("Invalid JSON body") from e
        return data if isinstance(data, dict) else {}

    def _form(self) -> dict[str, list[str]]:
        if "x-www-form-urlencoded" not in self.headers.get("Content-Type", "").lower():
            return {}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def bool(self, name: str, default: bool | None = None) -> bool | None:
        value = self.params.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in _TRUE

    def list(self, name: str) -> list[str] | None:
        value = self.params.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return [str(v) for v in value]


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


Handler = Callable[[Backend, Request, dict[str, str]], Response]


def paginate(req: Request, items: list[Any], render: Callable[[Any], Any]) -> Response:
    """GitLab's offset pagination: page/per_page (default 20, max 100) with X-* and Link headers."""
    try:
        per_page = max(1, min(100, int(req.get("per_page") or 20)))
        page = max(1, int(req.get("page") or 1))
    except ValueError:
        raise BadRequest("page/per_page must be integers") from None
    total = len(items)
    pages = max(1, -(-total // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = {
        "X-Total": str(total),
        "X-Total-Pages": str(pages),
        "X-Per-Page": str(per_page),
        "X-Page": str(page),
        "X-Next-Page": str(page + 1) if page < pages else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "",
    }
    query = {k: v[-1] for k, v in req.query.items() if k not in ("page", "per_page")}

    def link(p: int) -> str:
        return f"{req.base_url}{req.path}?{urlencode({**query, 'page': p, 'per_page': per_page})}"

    links = []
    if page < pages:
        links.append(f'<{link(page + 1)}>; rel="next"')
    if page > 1:
        links.append(f'<{link(page - 1)}>; rel="prev"')
    links += [f'<{link(1)}>; rel="first"', f'<{link(pages)}>; rel="last"']
    headers["Link"] = ", ".join(links)
    return Response(200, [render(i) for i in chunk], headers)


# --- rendering ------------------------------------------------------------------------------------
def project_json(backend: Backend, p: Project) -> dict[str, Any]:
    base = backend.base_url
    host = base.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    return {
        "id": p.id,
        "name": p.name,
        "path": p.path,
        "description": p.description,
        "name_with_namespace": f"{p.namespace.name} / {p.name}",
        "path_with_namespace": p.full_path,
        "namespace": p.namespace.to_json(base),
        "topics": list(p.topics),
        "tag_list": list(p.topics),
        "default_branch": p.default_branch,
        "visibility": p.visibility,
        "archived": p.archived,
        "created_at": p.created_at,
        "last_activity_at": p.last_activity_at,
        "http_url_to_repo": f"{base}/{p.full_path}.git",
        "ssh_url_to_repo": f"git@{host}:{p.full_path}.git",
        "web_url": f"{base}/{p.full_path}",
        "readme_url": None,
        "empty_repo": p.repo.is_empty(),
        "ci_pipeline_variables_minimum_override_role": p.ci_pipeline_variables_minimum_override_role,
        "restrict_user_defined_variables": p.restrict_user_defined_variables,
        "ci_config_path": None,
        "marked_for_deletion_at": None,
        "marked_for_deletion_on": None,
        "permissions": {"project_access": {"access_level": 50}, "group_access": None},
    }


def pipeline_json(backend: Backend, p: Pipeline) -> dict[str, Any]:
    project = backend.projects.get(p.project_id)
    web = f"{backend.base_url}/{project.full_path}/-/pipelines/{p.id}" if project else ""
    return {
        "id": p.id,
        "iid": p.iid,
        "project_id": p.project_id,
        "ref": p.ref,
        "sha": p.sha,
        "status": p.status,
        "source": p.source,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "started_at": p.started_at,
        "finished_at": p.finished_at,
        "web_url": web,
        "name": p.name,
        "user": {"id": 1, "username": backend.username},
    }


def job_json(backend: Backend, job: Job) -> dict[str, Any]:
    pipeline = backend.pipelines[job.pipeline_id]
    project = backend.projects.get(pipeline.project_id)
    web = f"{backend.base_url}/{project.full_path}/-/jobs/{job.id}" if project else ""
    return {
        "id": job.id,
        "name": job.name,
        "stage": job.stage,
        "status": job.status,
        "when": job.when,
        "allow_failure": job.allow_failure,
        "ref": pipeline.ref,
        "tag": False,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "duration": job.duration,
        "web_url": web,
        "user": {"id": 1, "username": backend.username},
        "commit": {"id": pipeline.sha, "short_id": pipeline.sha[:8]},
        "pipeline": {
            "id": pipeline.id,
            "project_id": pipeline.project_id,
            "ref": pipeline.ref,
            "sha": pipeline.sha,
            "status": pipeline.status,
        },
    }


def commit_json(backend: Backend, project: Project, sha: str) -> dict[str, Any]:
    info = project.repo.commit_info(sha)
    return {
        "id": info.id,
        "short_id": info.id[:8],
        "title": info.title,
        "message": info.message,
        "parent_ids": list(info.parent_ids),
        "author_name": info.author_name,
        "author_email": info.author_email,
        "authored_date": info.authored_date,
        "committer_name": info.author_name,
        "committer_email": info.author_email,
        "committed_date": info.committed_date,
        "created_at": info.committed_date,
        "web_url": f"{backend.base_url}/{project.full_path}/-/commit/{info.id}",
    }


# --- users, groups, namespaces --------------------------------------------------------------------
def get_own_token(b: Backend, req: Request, m: dict[str, str]) -> Response:
    """GET /personal_access_tokens/self: the token of the request (a project token, or the admin's)."""
    token = req.principal.token if req.principal else None
    if token is not None:
        return Response(200, token.to_json())
    return Response(
        200,
        {
            "id": 1,
            "name": "stand-in admin token",
            "revoked": False,
            "active": True,
            "scopes": ["api"],
            "user_id": 1,
            "expires_at": b.token_expires_at,
        },
    )


def get_user(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(200, b.current_user(req.principal))


def get_group(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(200, b.namespace(m["id"], kind="group").to_json(b.base_url))


def list_groups(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return paginate(req, b.list_namespaces("group", req.get("search")), lambda n: n.to_json(b.base_url))


def get_namespace(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(200, b.namespace(m["id"]).to_json(b.base_url))


def list_namespaces(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return paginate(req, b.list_namespaces(None, req.get("search")), lambda n: n.to_json(b.base_url))


def list_group_projects(b: Backend, req: Request, m: dict[str, str]) -> Response:
    group = b.namespace(m["id"], kind="group")
    found = b.list_projects(group, req.get("search"))
    return paginate(req, found, lambda p: project_json(b, p))


# --- projects -------------------------------------------------------------------------------------
def list_projects(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return paginate(req, b.list_projects(None, req.get("search")), lambda p: project_json(b, p))


def create_project(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.create_project(
        name=req.get("name"),
        path=req.get("path"),
        namespace_id=req.get("namespace_id"),
        description=req.get("description"),
        topics=req.list("topics") or req.list("tag_list"),
        visibility=req.get("visibility"),
        default_branch=req.get("default_branch"),
        initialize_with_readme=bool(req.bool("initialize_with_readme", False)),
        ci_pipeline_variables_minimum_override_role=req.get("ci_pipeline_variables_minimum_override_role"),
    )
    return Response(201, project_json(b, project))


def get_project(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(200, project_json(b, b.project(m["id"])))


_UPDATABLE = (
    "name",
    "path",
    "description",
    "visibility",
    "default_branch",
    "ci_pipeline_variables_minimum_override_role",
)


def update_project(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    changes: dict[str, Any] = {k: req.get(k) for k in _UPDATABLE if k in req.params}
    if "topics" in req.params or "tag_list" in req.params:
        changes["topics"] = req.list("topics") if "topics" in req.params else req.list("tag_list")
    if "restrict_user_defined_variables" in req.params:
        changes["restrict_user_defined_variables"] = req.bool("restrict_user_defined_variables")
    return Response(200, project_json(b, b.update_project(project, changes)))


def archive_project(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(201, project_json(b, b.set_archived(b.project(m["id"]), True)))


def unarchive_project(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(201, project_json(b, b.set_archived(b.project(m["id"]), False)))


def delete_project(b: Backend, req: Request, m: dict[str, str]) -> Response:
    b.delete_project(b.project(m["id"]))
    return Response(202, {"message": "202 Accepted"})


# --- variables ------------------------------------------------------------------------------------
def list_variables(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return paginate(req, b.variables(b.project(m["id"])), lambda v: v.to_json())


def _scope(req: Request) -> str | None:
    scope = req.get("filter[environment_scope]")
    return None if scope is None else str(scope)


def get_variable(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(200, b.variable(b.project(m["id"]), unquote(m["key"]), _scope(req)).to_json())


def create_variable(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    if req.get("value") is None:
        raise MissingParameter("value")
    hidden = bool(req.bool("masked_and_hidden", False))
    var = Variable(
        key=str(req.get("key") or ""),
        value=str(req.get("value")),
        variable_type=str(req.get("variable_type") or "env_var"),
        protected=bool(req.bool("protected", False)),
        masked=bool(req.bool("masked", False)) or hidden,
        hidden=hidden,
        raw=bool(req.bool("raw", False)),
        environment_scope=str(req.get("environment_scope") or "*"),
        description=req.get("description"),
    )
    return Response(201, b.create_variable(project, var).to_json())


def update_variable(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    var = b.variable(project, unquote(m["key"]), _scope(req))
    changes = {
        "value": None if req.get("value") is None else str(req.get("value")),
        "variable_type": req.get("variable_type"),
        "protected": req.bool("protected"),
        "masked": req.bool("masked"),
        "raw": req.bool("raw"),
        "environment_scope": req.get("environment_scope"),
        "description": req.get("description"),
    }
    return Response(200, b.update_variable(project, var, changes).to_json())


def delete_variable(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    b.delete_variable(project, b.variable(project, unquote(m["key"]), _scope(req)))
    return Response(204, b"")


# --- repository -----------------------------------------------------------------------------------
def _actions(raw: Any) -> list[FileAction]:
    if not isinstance(raw, list) or not raw:
        raise MissingParameter("actions")
    actions = []
    for item in raw:
        if not isinstance(item, dict) or not item.get("action") or not item.get("file_path"):
            raise BadRequest("actions[action], actions[file_path] are missing")
        path = validate_file_path(str(item["file_path"]))
        content = decode_content(str(item.get("content") or ""), str(item.get("encoding") or "text"), path)
        previous = item.get("previous_path")
        actions.append(
            FileAction(
                str(item["action"]),
                path,
                content,
                validate_file_path(str(previous)) if previous else None,
                item.get("execute_filemode"),
            )
        )
    return actions


def create_commit(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    missing = [k for k in ("branch", "commit_message") if not req.get(k)]
    if missing:
        raise MissingParameter(*missing)
    author = (str(req.get("author_name")), str(req.get("author_email"))) if req.get("author_email") else None
    protected = project.protected_branches.get(str(req.get("branch")))
    if protected is not None and not models.level_allows(
        protected.push_access_level, models.effective_level(req.principal)
    ):
        raise Forbidden({"message": models.COMMIT_PROTECTED})
    sha = b.commit(
        project,
        branch=str(req.get("branch")),
        message=str(req.get("commit_message")),
        actions=_actions(req.get("actions")),
        start_branch=req.get("start_branch"),
        start_sha=req.get("start_sha"),
        author=author,
    )
    return Response(201, commit_json(b, project, sha))


def list_commits(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    ref = req.get("ref_name")
    sha = project.repo.resolve(ref or project.default_branch)
    if sha is None:
        return paginate(req, [], lambda c: c) if not ref else _raise(NotFound("Commit"))
    return paginate(req, project.repo.log(sha, req.get("path")), lambda s: commit_json(b, project, s))


def get_commit(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    sha = project.repo.resolve(unquote(m["sha"]))
    if sha is None:
        raise NotFound("Commit")
    return Response(200, commit_json(b, project, sha))


def get_tree(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    sha = project.repo.resolve(req.get("ref") or project.default_branch)
    if sha is None:
        raise NotFound("Tree")
    entries = project.repo.tree(sha, str(req.get("path") or ""), bool(req.bool("recursive", False)))
    return paginate(
        req,
        entries,
        lambda e: {
            "id": e.id,
            "name": e.path.rsplit("/", 1)[-1],
            "type": e.type,
            "path": e.path,
            "mode": e.mode,
        },
    )


def _file(
    b: Backend, req: Request, m: dict[str, str], ref_required: bool
) -> tuple[Project, str, str, bytes, str]:
    project = b.project(m["id"])
    ref = req.get("ref")
    if ref_required and not ref:
        raise MissingParameter("ref")
    ref = str(ref or project.default_branch)
    sha = project.repo.resolve(ref)
    if sha is None:
        raise NotFound("Commit")
    path = unquote(m["path"])
    blob_id, data = project.repo.blob(sha, path)
    return project, ref, sha, data, blob_id


def get_file(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project, ref, sha, data, blob_id = _file(b, req, m, ref_required=True)
    path = unquote(m["path"])
    last = project.repo.log(sha, path)
    return Response(
        200,
        {
            "file_name": path.rsplit("/", 1)[-1],
            "file_path": path,
            "size": len(data),
            "encoding": "base64",
            "content": base64.b64encode(data).decode("ascii"),
            "content_sha256": hashlib.sha256(data).hexdigest(),
            "ref": ref,
            "blob_id": blob_id,
            "commit_id": sha,
            "last_commit_id": last[0] if last else sha,
            "execute_filemode": False,
        },
    )


def get_file_raw(b: Backend, req: Request, m: dict[str, str]) -> Response:
    _, _, _, data, blob_id = _file(b, req, m, ref_required=False)
    return Response(
        200, data, {"X-Gitlab-Blob-Id": blob_id, "X-Gitlab-Size": str(len(data))}, "application/octet-stream"
    )


def _single_file_commit(b: Backend, req: Request, m: dict[str, str], action: str) -> tuple[Project, str]:
    project = b.project(m["id"])
    missing = [k for k in ("branch", "commit_message") if not req.get(k)]
    if action != "delete" and req.get("content") is None:
        missing.append("content")
    if missing:
        raise MissingParameter(*missing)
    path = validate_file_path(unquote(m["path"]))
    content = decode_content(str(req.get("content") or ""), str(req.get("encoding") or "text"), path)
    b.commit(
        project,
        branch=str(req.get("branch")),
        message=str(req.get("commit_message")),
        actions=[FileAction(action, path, content)],
        start_branch=req.get("start_branch"),
    )
    return project, path


def create_file(b: Backend, req: Request, m: dict[str, str]) -> Response:
    _, path = _single_file_commit(b, req, m, "create")
    return Response(201, {"file_path": path, "branch": req.get("branch")})


def update_file(b: Backend, req: Request, m: dict[str, str]) -> Response:
    _, path = _single_file_commit(b, req, m, "update")
    return Response(200, {"file_path": path, "branch": req.get("branch")})


def delete_file(b: Backend, req: Request, m: dict[str, str]) -> Response:
    _single_file_commit(b, req, m, "delete")
    return Response(204, b"")


def list_branches(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    branches = sorted(project.repo.branches().items())
    return paginate(req, branches, lambda nb: _branch_json(b, project, *nb))


def get_branch(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    name = unquote(m["branch"])
    sha = project.repo.branches().get(name)
    if sha is None:
        raise NotFound("Branch")
    return Response(200, _branch_json(b, project, name, sha))


def _branch_json(b: Backend, project: Project, name: str, sha: str) -> dict[str, Any]:
    return {
        "name": name,
        "default": name == project.default_branch,
        "protected": False,
        "merged": False,
        "commit": commit_json(b, project, sha),
        "web_url": f"{b.base_url}/{project.full_path}/-/tree/{name}",
    }


# --- pipelines and jobs ---------------------------------------------------------------------------
def _pipeline_variables(raw: Any) -> list[dict[str, Any]]:
    if raw in (None, "", []):
        return []
    if isinstance(raw, dict):  # the trigger API's variables[KEY]=value shape
        return [{"key": k, "value": v} for k, v in raw.items()]
    if not isinstance(raw, list) or not all(isinstance(v, dict) and v.get("key") for v in raw):
        raise BadRequest("variables is invalid")
    return raw


def create_pipeline(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    variables = _pipeline_variables(req.get("variables"))
    pipeline = b.create_pipeline(project, str(req.get("ref") or ""), variables)
    return Response(201, pipeline_json(b, pipeline))


def list_pipelines(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    found = b.list_pipelines(project, req.get("ref"), req.get("status"), req.get("source"), req.get("name"))
    return paginate(req, found, lambda p: pipeline_json(b, p))


def get_pipeline(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(200, pipeline_json(b, b.pipeline(b.project(m["id"]), m["pipeline_id"])))


def get_pipeline_variables(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(200, list(b.pipeline(b.project(m["id"]), m["pipeline_id"]).variables))


def list_pipeline_jobs(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    jobs = b.list_jobs(project, b.pipeline(project, m["pipeline_id"]))
    scope = req.list("scope")
    if scope:
        jobs = [j for j in jobs if j.status in scope]
    return paginate(req, jobs, lambda j: job_json(b, j))


def list_jobs(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return paginate(req, b.list_jobs(b.project(m["id"])), lambda j: job_json(b, j))


def get_job(b: Backend, req: Request, m: dict[str, str]) -> Response:
    return Response(200, job_json(b, b.job(b.project(m["id"]), m["job_id"])))


def get_job_trace(b: Backend, req: Request, m: dict[str, str]) -> Response:
    job = b.job(b.project(m["id"]), m["job_id"])
    return Response(200, job.log, content_type="text/plain; charset=utf-8")


def play_job(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    return Response(200, job_json(b, b.play_job(project, b.job(project, m["job_id"]))))


# --- protected branches and pipeline triggers (see models.Protection) ------------------------------
def list_protected_branches(b: Backend, req: Request, m: dict[str, str]) -> Response:
    req.need(MAINTAINER)
    project = b.project(m["id"])
    return paginate(
        req, sorted(project.protected_branches.values(), key=lambda p: p.name), lambda p: p.to_json()
    )


def get_protected_branch(b: Backend, req: Request, m: dict[str, str]) -> Response:
    branch = b.project(m["id"]).protected_branches.get(unquote(m["name"]))
    if branch is None:
        raise NotFound()
    return Response(200, branch.to_json())


def protect_branch(b: Backend, req: Request, m: dict[str, str]) -> Response:
    req.need(MAINTAINER)
    name = req.get("name")
    if not name:
        raise MissingParameter("name")
    branch = models.protect_branch(
        b,
        b.project(m["id"]),
        str(name),
        int(req.get("push_access_level", 40)),
        int(req.get("merge_access_level", 40)),
    )
    return Response(201, branch.to_json())


def unprotect_branch(b: Backend, req: Request, m: dict[str, str]) -> Response:
    req.need(MAINTAINER)
    models.unprotect_branch(b, b.project(m["id"]), unquote(m["name"]))
    return Response(204, None)


def list_triggers(b: Backend, req: Request, m: dict[str, str]) -> Response:
    req.need(MAINTAINER)
    project = b.project(m["id"])
    return paginate(req, sorted(project.triggers.values(), key=lambda t: t.id), lambda t: t.to_json(True))


def create_trigger(b: Backend, req: Request, m: dict[str, str]) -> Response:
    req.need(MAINTAINER)
    description = req.get("description")
    if not description:
        raise MissingParameter("description")
    return Response(201, models.create_trigger(b, b.project(m["id"]), str(description)).to_json(True))


def delete_trigger(b: Backend, req: Request, m: dict[str, str]) -> Response:
    req.need(MAINTAINER)
    models.delete_trigger(b, b.project(m["id"]), int(m["trigger_id"]))
    return Response(204, None)


def run_trigger(b: Backend, req: Request, m: dict[str, str]) -> Response:
    token, ref = req.get("token"), req.get("ref")
    if not token or not ref:
        raise MissingParameter(*[n for n, v in (("token", token), ("ref", ref)) if not v])
    variables = _pipeline_variables(req.get("variables") or _bracket_variables(req.params))
    pipeline = models.run_trigger(b, b.project(m["id"]), str(token), str(ref), variables)
    return Response(201, pipeline_json(b, pipeline))


def _bracket_variables(params: dict[str, Any]) -> dict[str, Any]:
    """Form bodies carry variables as variables[KEY]=value."""
    return {
        k[len("variables[") : -1]: v
        for k, v in params.items()
        if k.startswith("variables[") and k.endswith("]")
    }


def create_branch(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(DEVELOPER)
    name = str(req.get("branch") or "")
    sha = b.create_branch(project, name, str(req.get("ref") or ""))
    return Response(201, _branch_json(b, project, name, sha))


def delete_branch(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(DEVELOPER)
    b.delete_branch(project, unquote(m["branch"]))
    return Response(204, b"")


# --- merge requests and notes ----------------------------------------------------------------------
def user_json(backend: Backend, user: Any) -> dict[str, Any]:
    return {
        "id": user.get("id"),
        "username": user.get("username"),
        "name": user.get("name"),
        "state": user.get("state", "active"),
        "avatar_url": None,
        "web_url": f"{backend.base_url}/{user.get('username')}",
    }


def mr_json(b: Backend, project: Project, mr: MergeRequest, detail: bool = False) -> dict[str, Any]:
    web = f"{b.base_url}/{project.full_path}/-/merge_requests/{mr.iid}"
    draft = mr.title.lower().startswith(("draft:", "[draft]", "(draft)"))
    data: dict[str, Any] = {
        "id": mr.id,
        "iid": mr.iid,
        "project_id": project.id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "created_at": mr.created_at,
        "updated_at": mr.updated_at,
        "merged_at": mr.merged_at,
        "closed_at": mr.closed_at,
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "source_project_id": project.id,
        "target_project_id": project.id,
        "author": user_json(b, mr.author),
        "draft": draft,
        "work_in_progress": draft,
        "merge_status": "can_be_merged" if mr.state == "opened" else "unchecked",
        "detailed_merge_status": "mergeable" if mr.state == "opened" else "not_open",
        "sha": mr.sha,
        "merge_commit_sha": mr.merge_commit_sha,
        "squash_commit_sha": None,
        "user_notes_count": sum(1 for n in mr.notes if not n.system),
        "labels": [],
        "has_conflicts": False,
        "web_url": web,
        "references": {
            "short": f"!{mr.iid}",
            "relative": f"!{mr.iid}",
            "full": f"{project.full_path}!{mr.iid}",
        },
    }
    if detail:
        pipelines = b.mr_pipelines(project, mr)
        head = next((p for p in pipelines if p.sha == mr.sha), None)
        data["head_pipeline"] = pipeline_json(b, head) if head else None
        data["pipeline"] = pipeline_json(b, head) if head else None
        base = project.repo.merge_base(project.repo.branches().get(mr.target_branch, mr.sha), mr.sha)
        data["diff_refs"] = {"base_sha": base, "head_sha": mr.sha, "start_sha": base}
    return data


def note_json(b: Backend, note: Note) -> dict[str, Any]:
    return {
        "id": note.id,
        "type": None,
        "body": note.body,
        "attachment": None,
        "author": user_json(b, note.author),
        "created_at": note.created_at,
        "updated_at": note.updated_at,
        "system": note.system,
        "noteable_id": note.noteable_id,
        "noteable_type": "MergeRequest",
        "noteable_iid": note.noteable_iid,
        "project_id": note.project_id,
        "resolvable": False,
        "confidential": False,
        "internal": False,
    }


def list_merge_requests(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    found = b.list_merge_requests(
        project, req.get("state"), req.get("source_branch"), req.get("target_branch")
    )
    return paginate(req, found, lambda mr: mr_json(b, project, mr))


def create_merge_request(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(DEVELOPER)
    mr = b.create_merge_request(
        project,
        req.user,
        source_branch=str(req.get("source_branch") or ""),
        target_branch=str(req.get("target_branch") or ""),
        title=str(req.get("title") or ""),
        description=str(req.get("description") or ""),
    )
    return Response(201, mr_json(b, project, mr, detail=True))


def get_merge_request(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    return Response(200, mr_json(b, project, b.merge_request(project, m["iid"]), detail=True))


def update_merge_request(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(DEVELOPER)
    mr = b.merge_request(project, m["iid"])
    fields = ("title", "description", "state_event")
    changes: dict[str, Any] = {k: req.get(k) for k in fields if k in req.params}
    return Response(200, mr_json(b, project, b.update_merge_request(project, mr, changes), detail=True))


def merge_merge_request(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(DEVELOPER)
    target = b.merge_request(project, m["iid"]).target_branch
    protected = project.protected_branches.get(target)
    if protected is not None and not models.level_allows(
        protected.merge_access_level, models.effective_level(req.principal)
    ):
        raise Unauthorized()
    mr = b.merge(
        project,
        b.merge_request(project, m["iid"]),
        sha=req.get("sha"),
        message=req.get("merge_commit_message"),
        remove_source_branch=bool(req.bool("should_remove_source_branch", False)),
    )
    return Response(200, mr_json(b, project, mr, detail=True))


def list_mr_pipelines(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    mr = b.merge_request(project, m["iid"])
    return paginate(req, b.mr_pipelines(project, mr), lambda p: pipeline_json(b, p))


def create_mr_pipeline(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(DEVELOPER)
    pipeline = b.create_mr_pipeline(project, b.merge_request(project, m["iid"]))
    return Response(201, pipeline_json(b, pipeline))


def list_notes(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    notes = list(b.merge_request(project, m["iid"]).notes)
    ascending = str(req.get("sort") or "desc") == "asc"
    notes.sort(
        key=lambda n: (n.updated_at if req.get("order_by") == "updated_at" else n.created_at, n.id),
        reverse=not ascending,
    )
    return paginate(req, notes, lambda n: note_json(b, n))


def create_note(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(REPORTER)
    note = b.add_note(project, b.merge_request(project, m["iid"]), req.user, str(req.get("body") or ""))
    return Response(201, note_json(b, note))


def get_note(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    return Response(200, note_json(b, b.note(b.merge_request(project, m["iid"]), m["note_id"])))


def update_note(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    mr = b.merge_request(project, m["iid"])
    note = b.update_note(mr, b.note(mr, m["note_id"]), req.user, str(req.get("body") or ""))
    return Response(200, note_json(b, note))


def delete_note(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    mr = b.merge_request(project, m["iid"])
    b.delete_note(mr, b.note(mr, m["note_id"]), req.user)
    return Response(204, b"")


def commit_merge_requests(b: Backend, req: Request, m: dict[str, str]) -> Response:
    """Merge requests a commit belongs to: the one it merged, or those whose source branch holds it."""
    project = b.project(m["id"])
    sha = project.repo.resolve(unquote(m["sha"]))
    if sha is None:
        raise NotFound("Commit")
    found = [
        mr
        for mr in b.list_merge_requests(project)
        if mr.merge_commit_sha == sha or project.repo.is_ancestor(sha, mr.sha)
    ]
    return paginate(req, found, lambda mr: mr_json(b, project, mr))


# --- environments and deployments ------------------------------------------------------------------
def deployment_json(b: Backend, project: Project, d: Deployment) -> dict[str, Any]:
    env = next((e for e in project.environments.values() if e.id == d.environment_id), None)
    job = b.jobs.get(d.job_id)
    return {
        "id": d.id,
        "iid": d.iid,
        "ref": d.ref,
        "sha": d.sha,
        "status": d.status,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "user": user_json(b, b.user),
        "environment": {"id": env.id, "name": env.name, "external_url": env.external_url} if env else None,
        "deployable": job_json(b, job) if job else None,
    }


def environment_json(b: Backend, project: Project, env: Environment, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": env.id,
        "name": env.name,
        "slug": env.slug,
        "external_url": env.external_url,
        "state": "available",
        "tier": env.tier,
        "created_at": env.created_at,
        "updated_at": env.updated_at,
    }
    if detail:
        last = b.last_deployment(project, env)
        data["last_deployment"] = deployment_json(b, project, last) if last else None
    return data


def list_environments(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    return paginate(req, b.environments(project, req.get("name")), lambda e: environment_json(b, project, e))


def get_environment(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    return Response(200, environment_json(b, project, b.environment(project, m["env_id"]), detail=True))


def list_deployments(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    found = b.deployments(project, req.get("environment"), req.get("status"))
    if str(req.get("sort") or "asc") == "desc":
        found = list(reversed(found))
    return paginate(req, found, lambda d: deployment_json(b, project, d))


def get_deployment(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    found = next((d for d in b.deployments(project) if str(d.id) == m["deployment_id"]), None)
    if found is None:
        raise NotFound("Deployment")
    return Response(200, deployment_json(b, project, found))


# --- project access tokens -------------------------------------------------------------------------
def create_access_token(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(MAINTAINER)
    expires = req.get("expires_at")
    if not expires:  # GitLab applies the maximum lifetime (365 days) when none is given
        from datetime import UTC, datetime, timedelta

        expires = (datetime.now(UTC) + timedelta(days=365)).date().isoformat()
    token = b.create_access_token(
        project,
        str(req.get("name") or ""),
        req.list("scopes") or [],
        int(req.get("access_level") or MAINTAINER),
        str(expires),
    )
    return Response(201, token.to_json(with_token=True))


def list_access_tokens(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(MAINTAINER)
    return paginate(req, b.access_tokens_of(project), lambda t: t.to_json())


def _token(b: Backend, project: Project, token_id: str) -> AccessToken:
    found = next((t for t in b.access_tokens_of(project) if str(t.id) == token_id), None)
    if found is None:
        raise NotFound("")
    return found


def get_access_token(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(MAINTAINER)
    return Response(200, _token(b, project, m["token_id"]).to_json())


def revoke_access_token(b: Backend, req: Request, m: dict[str, str]) -> Response:
    project = b.project(m["id"])
    req.need(MAINTAINER)
    _token(b, project, m["token_id"]).revoked = True
    return Response(204, b"")


def _raise(error: Exception) -> Response:
    raise error
