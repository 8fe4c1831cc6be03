"""A small, stateful stand-in for GitLab's REST API (v4), for integration tests and the local sandbox.

Reproduced (as python-gitlab 8.x sees it): PRIVATE-TOKEN auth (401), the current user, groups and
namespaces by id or url-encoded path, projects (create with GitLab's 400 "has already been taken",
get by id or path, update, archive/unarchive, delete 202), project CI/CD variables with GitLab's
masking rule, the commits API with create/update/delete/move/chmod actions (text or base64) as REAL git
commits in a bare repository per project, tree/files/raw/branches/commits reads, read-only `git clone`
over smart HTTP at http_url_to_repo, pipelines (POST /pipeline honouring
ci_pipeline_variables_minimum_override_role, "Reference not found", "Missing CI config file"), jobs,
traces (masked values hidden) and play, offset pagination headers (X-Total, X-Next-Page, Link), and
fault injection (401/404/409/429 with Retry-After/5xx/slow) for tests, protected branches (protected
variables reach only their pipelines) and pipeline trigger tokens (models.Protection).

Left out: users other than one admin token owner, permissions and visibility checks, merge requests,
issues, tags, webhooks, keyset pagination, group/instance
variables, ssh (ssh_url_to_repo is shaped right but nothing listens), git push, delayed deletion, and
persistence (state lives in memory; repositories on disk are wiped on reset). Pipelines only run with a
runner (see runner.py); otherwise they stay "created".
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
