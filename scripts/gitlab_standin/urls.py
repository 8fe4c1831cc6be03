"""Route table: (method, path regex under /api/v4, handler). Paths are matched still percent-encoded,
so `ml-team%2Fmodel-build` is one segment, as in GitLab."""

from __future__ import annotations

import re

from . import responses as r
from .exceptions import MethodNotAllowed

_ID = r"(?P<id>[^/]+)"
_P = rf"/projects/{_ID}"
_MR = rf"{_P}/merge_requests/(?P<iid>\d+)"

ROUTES: list[tuple[str, str, r.Handler]] = [
    ("GET", r"/user", r.get_user),
    ("GET", r"/personal_access_tokens/self", r.get_own_token),
    ("GET", r"/groups", r.list_groups),
    ("GET", rf"/groups/{_ID}", r.get_group),
    ("GET", rf"/groups/{_ID}/projects", r.list_group_projects),
    ("GET", r"/namespaces", r.list_namespaces),
    ("GET", rf"/namespaces/{_ID}", r.get_namespace),
    ("GET", r"/projects", r.list_projects),
    ("POST", r"/projects", r.create_project),
    ("GET", _P, r.get_project),
    ("PUT", _P, r.update_project),
    ("DELETE", _P, r.delete_project),
    ("POST", rf"{_P}/archive", r.archive_project),
    ("POST", rf"{_P}/unarchive", r.unarchive_project),
    ("GET", rf"{_P}/variables", r.list_variables),
    ("POST", rf"{_P}/variables", r.create_variable),
    ("GET", rf"{_P}/variables/(?P<key>[^/]+)", r.get_variable),
    ("PUT", rf"{_P}/variables/(?P<key>[^/]+)", r.update_variable),
    ("DELETE", rf"{_P}/variables/(?P<key>[^/]+)", r.delete_variable),
    ("GET", rf"{_P}/repository/commits", r.list_commits),
    ("POST", rf"{_P}/repository/commits", r.create_commit),
    ("GET", rf"{_P}/repository/commits/(?P<sha>[^/]+)", r.get_commit),
    ("GET", rf"{_P}/repository/tree", r.get_tree),
    ("GET", rf"{_P}/repository/files/(?P<path>[^/]+)/raw", r.get_file_raw),
    ("GET", rf"{_P}/repository/files/(?P<path>[^/]+)", r.get_file),
    ("POST", rf"{_P}/repository/files/(?P<path>[^/]+)", r.create_file),
    ("PUT", rf"{_P}/repository/files/(?P<path>[^/]+)", r.update_file),
    ("DELETE", rf"{_P}/repository/files/(?P<path>[^/]+)", r.delete_file),
    ("GET", rf"{_P}/repository/branches", r.list_branches),
    ("POST", rf"{_P}/repository/branches", r.create_branch),
    ("GET", rf"{_P}/repository/branches/(?P<branch>[^/]+)", r.get_branch),
    ("DELETE", rf"{_P}/repository/branches/(?P<branch>[^/]+)", r.delete_branch),
    ("GET", rf"{_P}/repository/commits/(?P<sha>[^/]+)/merge_requests", r.commit_merge_requests),
    ("GET", rf"{_P}/merge_requests", r.list_merge_requests),
    ("POST", rf"{_P}/merge_requests", r.create_merge_request),
    ("GET", rf"{_MR}", r.get_merge_request),
    ("PUT", rf"{_MR}", r.update_merge_request),
    ("PUT", rf"{_MR}/merge", r.merge_merge_request),
    ("GET", rf"{_MR}/pipelines", r.list_mr_pipelines),
    ("POST", rf"{_MR}/pipelines", r.create_mr_pipeline),
    ("GET", rf"{_MR}/notes", r.list_notes),
    ("POST", rf"{_MR}/notes", r.create_note),
    ("GET", rf"{_MR}/notes/(?P<note_id>\d+)", r.get_note),
    ("PUT", rf"{_MR}/notes/(?P<note_id>\d+)", r.update_note),
    ("DELETE", rf"{_MR}/notes/(?P<note_id>\d+)", r.delete_note),
    ("GET", rf"{_P}/environments", r.list_environments),
    ("GET", rf"{_P}/environments/(?P<env_id>\d+)", r.get_environment),
    ("GET", rf"{_P}/deployments", r.list_deployments),
    ("GET", rf"{_P}/deployments/(?P<deployment_id>\d+)", r.get_deployment),
    ("GET", rf"{_P}/access_tokens", r.list_access_tokens),
    ("POST", rf"{_P}/access_tokens", r.create_access_token),
    ("GET", rf"{_P}/access_tokens/(?P<token_id>\d+)", r.get_access_token),
    ("DELETE", rf"{_P}/access_tokens/(?P<token_id>\d+)", r.revoke_access_token),
    ("POST", rf"{_P}/pipeline", r.create_pipeline),
    ("GET", rf"{_P}/pipelines", r.list_pipelines),
    ("GET", rf"{_P}/pipelines/(?P<pipeline_id>\d+)", r.get_pipeline),
    ("GET", rf"{_P}/pipelines/(?P<pipeline_id>\d+)/variables", r.get_pipeline_variables),
    ("GET", rf"{_P}/pipelines/(?P<pipeline_id>\d+)/jobs", r.list_pipeline_jobs),
    ("GET", rf"{_P}/jobs", r.list_jobs),
    ("GET", rf"{_P}/jobs/(?P<job_id>\d+)", r.get_job),
    ("GET", rf"{_P}/jobs/(?P<job_id>\d+)/trace", r.get_job_trace),
    ("POST", rf"{_P}/jobs/(?P<job_id>\d+)/play", r.play_job),
    ("GET", rf"{_P}/protected_branches", r.list_protected_branches),
    ("POST", rf"{_P}/protected_branches", r.protect_branch),
    ("GET", rf"{_P}/protected_branches/(?P<name>[^/]+)", r.get_protected_branch),
    ("DELETE", rf"{_P}/protected_branches/(?P<name>[^/]+)", r.unprotect_branch),
    ("GET", rf"{_P}/triggers", r.list_triggers),
    ("POST", rf"{_P}/triggers", r.create_trigger),
    ("DELETE", rf"{_P}/triggers/(?P<trigger_id>\d+)", r.delete_trigger),
    ("POST", rf"{_P}/trigger/pipeline", r.run_trigger),
]

# Authenticated by the trigger token in the request, not by a private token (GitLab pipeline triggers API).
TOKEN_IN_BODY = re.compile(rf"^{_P}/trigger/pipeline/?$")

COMPILED = [(method, re.compile(rf"^{pattern}/?$"), handler) for method, pattern, handler in ROUTES]


def match(method: str, path: str) -> tuple[r.Handler, dict[str, str]] | None:
    """The handler for `method path` (path relative to /api/v4), or None; HEAD is served as GET."""
    wanted = "GET" if method == "HEAD" else method
    path_matched = False
    for route_method, regex, handler in COMPILED:
        found = regex.match(path)
        if found:
            path_matched = True
            if route_method == wanted:
                return handler, found.groupdict()
    if path_matched:
        raise MethodNotAllowed()
    return None
