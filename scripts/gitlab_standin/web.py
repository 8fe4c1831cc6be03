"""Read-only web pages at the URLs the API hands out (web_url of projects, pipelines, jobs, merge requests,
environments), so a link the sandbox prints opens something in a browser or with curl.

GitLab serves these pages to signed-in users; the stand-in has no sessions and serves them without
sign-in, on 127.0.0.1 only. Job logs are the masked traces the API returns. Markdown (merge request
notes) is shown as its source text; tables stay readable that way. Anything else under a project path
answers 404 as GitLab does for a page that does not exist.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .exceptions import StandinError
from .models import Backend, Job, MergeRequest, Pipeline, Project
from .responses import Response

_PAGE = re.compile(r"^/(?P<path>[^-][^?]*?)(?:/-/(?P<kind>pipelines|jobs|merge_requests|environments)"
                   r"(?:/(?P<ident>[A-Za-z0-9_]+))?)?/?$")
_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}pre{background:#f6f6f6;padding:1em;"
    "white-space:pre-wrap}.success{color:#217645}.failed{color:#c91c00}.manual,.running{color:#9e5400}"
)


def page(backend: Backend, path: str, query: Mapping[str, list[str]]) -> Response | None:
    """The page for `path`, or None when it names no project page (the caller answers 404)."""
    found = _PAGE.match(path)
    if not found:
        return None
    try:
        project = backend.project(found.group("path"))
    except StandinError:
        return None
    kind, ident = found.group("kind"), found.group("ident")
    try:
        if kind is None:
            return _html(project.full_path, _project(backend, project))
        if kind == "pipelines" and ident is None:
            return _html(f"Pipelines · {project.full_path}", _pipelines(backend, project))
        if kind == "pipelines" and ident is not None:
            pipeline = backend.pipeline(project, ident)
            title = f"Pipeline #{pipeline.id} · {project.full_path}"
            return _html(title, _pipeline(backend, project, pipeline))
        if kind == "jobs" and ident is not None:
            job = backend.job(project, ident)
            return _html(f"{job.name} (#{job.id}) · {project.full_path}", _job(backend, project, job))
        if kind == "merge_requests" and ident == "new":
            source = (query.get("merge_request[source_branch]") or [""])[0]
            return _html(f"New merge request · {project.full_path}", _new_mr(backend, project, source))
        if kind == "merge_requests" and ident is None:
            return _html(f"Merge requests · {project.full_path}", _mrs(backend, project))
        if kind == "merge_requests" and ident is not None:
            mr = backend.merge_request(project, ident)
            return _html(f"{mr.title} (!{mr.iid}) · {project.full_path}", _mr(backend, project, mr))
        if kind == "environments" and ident is None:
            return _html(f"Environments · {project.full_path}", _environments(backend, project))
    except StandinError:
        return None
    return None


def _html(title: str, body: str) -> Response:
    text = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return Response(200, text, content_type="text/html; charset=utf-8")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _link(url: str, text: Any) -> str:
    return f'<a href="{_e(url)}">{_e(text)}</a>'


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _status(status: str) -> str:
    return f'<span class="{_e(status)}">{_e(status)}</span>'


def _url(backend: Backend, project: Project, tail: str = "") -> str:
    return f"{backend.base_url}/{project.full_path}{tail}"


def _pipeline_rows(backend: Backend, project: Project, pipelines: Iterable[Pipeline]) -> list[list[str]]:
    return [[_link(_url(backend, project, f"/-/pipelines/{p.id}"), f"#{p.id}"), _status(p.status),
             _e(p.source), _e(p.ref), _e(p.sha[:8]), _e(p.created_at)] for p in pipelines]


_PIPELINE_HEADERS = ("pipeline", "status", "source", "ref", "commit", "created")


def _project(backend: Backend, project: Project) -> str:
    branches = sorted(project.repo.branches().items())
    mrs = backend.list_merge_requests(project, state="opened")
    parts = [
        f"<p>Clone: <code>{_e(_url(backend, project, '.git'))}</code> (HTTPS, any user name, a token as the "
        "password)</p>",
        "<h2>Branches</h2>", _table(("branch", "commit"), ([_e(n), _e(s[:8])] for n, s in branches)),
        "<h2>Open merge requests</h2>",
        _table(("merge request", "source", "target"),
               ([_link(_url(backend, project, f"/-/merge_requests/{m.iid}"), f"!{m.iid} {m.title}"),
                 _e(m.source_branch), _e(m.target_branch)] for m in mrs)),
        f"<h2>{_link(_url(backend, project, '/-/pipelines'), 'Pipelines')}</h2>",
        _table(_PIPELINE_HEADERS, _pipeline_rows(backend, project, backend.list_pipelines(project)[:10])),
        f"<p>{_link(_url(backend, project, '/-/environments'), 'Environments')}</p>",
    ]
    return "".join(parts)


def _pipelines(backend: Backend, project: Project) -> str:
    return _table(_PIPELINE_HEADERS, _pipeline_rows(backend, project, backend.list_pipelines(project)))


def _pipeline(backend: Backend, project: Project, pipeline: Pipeline) -> str:
    facts = [f"<p>Status {_status(pipeline.status)} · source {_e(pipeline.source)} · "
             f"ref {_e(pipeline.ref)} · commit <code>{_e(pipeline.sha)}</code></p>"]
    if pipeline.merge_request_iid:
        url = _url(backend, project, f"/-/merge_requests/{pipeline.merge_request_iid}")
        facts.append(f"<p>Merge request {_link(url, f'!{pipeline.merge_request_iid}')}</p>")
    rows = [[_e(j.stage), _link(_url(backend, project, f"/-/jobs/{j.id}"), j.name), _status(j.status),
             _e(j.duration if j.duration is not None else ""), _e(j.environment or "")]
            for j in pipeline.jobs]
    return "".join(facts) + _table(("stage", "job", "status", "seconds", "environment"), rows)


def _job(backend: Backend, project: Project, job: Job) -> str:
    pipeline_url = _url(backend, project, f"/-/pipelines/{job.pipeline_id}")
    return (f"<p>Status {_status(job.status)} · stage {_e(job.stage)} · pipeline "
            f"{_link(pipeline_url, f'#{job.pipeline_id}')}</p><pre>{_e(job.log or '(no log yet)')}</pre>")


def _mrs(backend: Backend, project: Project) -> str:
    rows = [[_link(_url(backend, project, f"/-/merge_requests/{m.iid}"), f"!{m.iid}"), _e(m.title),
             _e(m.state), _e(m.source_branch), _e(m.target_branch)]
            for m in backend.list_merge_requests(project)]
    return _table(("merge request", "title", "state", "source", "target"), rows)


def _mr(backend: Backend, project: Project, mr: MergeRequest) -> str:
    merged = f" · merged as <code>{_e(mr.merge_commit_sha[:8])}</code>" if mr.merge_commit_sha else ""
    facts = (f"<p>{_e(mr.state)} · {_e(mr.source_branch)} → {_e(mr.target_branch)} · head "
             f"<code>{_e(mr.sha[:8])}</code>{merged}</p>")
    description = f"<pre>{_e(mr.description)}</pre>" if mr.description else ""
    pipelines = _table(_PIPELINE_HEADERS, _pipeline_rows(backend, project, backend.mr_pipelines(project, mr)))
    notes = "".join(
        f"<h3>{_e(n.author.get('name'))} (@{_e(n.author.get('username'))}) · {_e(n.updated_at)}</h3>"
        f"<pre>{_e(n.body)}</pre>" for n in sorted(mr.notes, key=lambda n: n.id)
    ) or "<p>No comments yet.</p>"
    return f"{facts}{description}<h2>Pipelines</h2>{pipelines}<h2>Comments</h2>{notes}"


def _new_mr(backend: Backend, project: Project, source: str) -> str:
    api = f"{backend.base_url}/api/v4/projects/{project.id}/merge_requests"
    example = (f'curl --cacert CA.pem -H "PRIVATE-TOKEN: $GITLAB_TOKEN" -X POST "{api}" '
               f'-d source_branch={source or "BRANCH"} -d target_branch={project.default_branch} '
               '-d "title=..."')
    return ("<p>The sandbox has no web forms: open the merge request through the API, for example with "
            "python-gitlab (<code>project.mergerequests.create({...})</code>) or:</p>"
            f"<pre>{_e(example)}</pre>")


def _environments(backend: Backend, project: Project) -> str:
    rows = []
    for env in backend.environments(project):
        last = backend.last_deployment(project, env)
        job = backend.jobs.get(last.job_id) if last else None
        rows.append([_e(env.name), _link(env.external_url, env.external_url) if env.external_url else "",
                     _link(_url(backend, project, f"/-/pipelines/{last.pipeline_id}"), f"#{last.pipeline_id}")
                     if last else "", _e(last.sha[:8] if last else ""),
                     _link(_url(backend, project, f"/-/jobs/{job.id}"), job.name) if job else ""])
    return _table(("environment", "url", "last deployment", "commit", "job"), rows)
