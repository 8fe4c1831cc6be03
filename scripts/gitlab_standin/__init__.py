"""A small, stateful stand-in for GitLab's REST API (v4) and Git over HTTPS, for integration tests and the
local sandbox.

Reproduced (as python-gitlab 8.x and plain git see it): PRIVATE-TOKEN/Bearer auth (401), project access
tokens (bot user, scopes, role, expiry, bound to one project), the current user, groups and namespaces by id
or url-encoded path, projects (create with GitLab's 400 "has already been taken", get by id or path, update,
archive/unarchive, delete 202), project CI/CD variables with GitLab's masking rule, the commits API with
create/update/delete/move/chmod actions (text or base64) as REAL git commits in a bare repository per
project, tree/files/raw/branches (create, delete)/commits reads, git clone, fetch and push over smart HTTP
at http_url_to_repo (HTTP Basic with the token as password, GitLab's 401/403 answers and push hints),
push events that start pipelines per `workflow:rules`, merge requests (create, list, get, update, close,
merge with GitLab's merge commit, their pipelines and notes), pipelines (POST /pipeline honouring
ci_pipeline_variables_minimum_override_role, "Reference not found", "Missing CI config file", "Pipeline
filtered out by workflow rules."), merge request pipelines with GitLab's predefined variables, jobs, traces
(masked values hidden) and play, environments and deployments from jobs with `environment:`, offset
pagination headers (X-Total, X-Next-Page, Link), read-only web pages at the URLs the API returns, protected
branches (protected variables reach only pipelines of protected refs; push and merge by role) and pipeline
trigger tokens (models.Protection), and fault injection (401/404/409/429 with Retry-After/5xx/slow) for
tests. Each rule is written, with its source, in
the docstring of the module that reproduces it (models.py, server.py, runner.py, web.py).

Left out: users other than one admin token owner and project bots, group membership and visibility checks
beyond public clone, issues, tags, protected tags and environments, webhooks, keyset pagination,
group/instance variables, ssh (ssh_url_to_repo is shaped right but nothing listens), squash and
fast-forward merges, merged-results pipelines, sign-in for the web pages, delayed deletion, and persistence
(state lives in memory; repositories on disk are wiped on reset). Pipelines only run with a runner (see
runner.py); otherwise they stay "created".
"""

from .runner import GitlabCiLocalRunner, JobSpec, PipelineConfigError, PipelineRunner, RunContext
from .server import Standin, start_standin

__all__ = [
    "GitlabCiLocalRunner",
    "JobSpec",
    "PipelineConfigError",
    "PipelineRunner",
    "RunContext",
    "Standin",
    "start_standin",
]
