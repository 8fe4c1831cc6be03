"""Plain git and python-gitlab against the stand-in: token auth over HTTP, pushes, merge requests and their
pipelines (rules evaluated by gitlab-ci-local), notes, merging, environments and the web pages."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest
import requests

from scripts.gitlab_standin import GitlabCiLocalRunner, Standin
from scripts.gitlab_standin.models import Pipeline
from scripts.gitlab_standin.runner import DEFAULT_GITLAB_CI_LOCAL
from scripts.gitlab_standin.testing import client, seed_project, standin, with_token

pytestmark = pytest.mark.skipif(
    not DEFAULT_GITLAB_CI_LOCAL.exists(), reason="needs node_modules/.bin/gitlab-ci-local (npm install)"
)

# The model-build seed's workflow: merge request pipelines, no duplicate branch pipeline while a merge
# request is open, the default branch, and pipelines started on purpose.
CI = """
workflow:
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS && $CI_PIPELINE_SOURCE == "push"
      when: never
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
    - if: $CI_PIPELINE_SOURCE =~ /^(web|api|trigger)$/
show:
  script:
    - echo "seen source=$CI_PIPELINE_SOURCE branch=${CI_COMMIT_BRANCH-unset}"
      "ref=$CI_COMMIT_REF_NAME mr=${CI_MERGE_REQUEST_IID-none}"
deploy:
  rules:
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
  script:
    - echo "ENDPOINT_CONSOLE_URL=https://console.example/endpoints/$CI_PIPELINE_ID" > deploy.env
  environment:
    name: staging
    url: $ENDPOINT_CONSOLE_URL
  artifacts:
    reports:
      dotenv: deploy.env
"""
IDENTITY = {"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.invalid", "GIT_COMMITTER_NAME": "Ada",
            "GIT_COMMITTER_EMAIL": "ada@example.invalid", "GIT_TERMINAL_PROMPT": "0"}


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **IDENTITY}, capture_output=True,
                          text=True, timeout=60, check=check)


def settled(server: Standin, project_id: int, count: int, timeout: float = 90) -> list[Pipeline]:
    """The project's pipelines once `count` exist and none is still running, newest first."""
    backend = server.backend
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backend.wait_idle(timeout=max(0.1, deadline - time.monotonic()))
        found = backend.list_pipelines(backend.project(project_id))
        if len(found) >= count:
            for pipeline in found:
                backend.wait_for_pipeline(pipeline.id, timeout=max(0.1, deadline - time.monotonic()))
            backend.wait_idle(timeout=5)
            return list(backend.list_pipelines(backend.project(project_id)))
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} pipelines after {timeout}s")


def job_log(server: Standin, pipeline: Pipeline, job: str) -> str:
    return next(j.log for j in pipeline.jobs if j.name == job)


@pytest.fixture(scope="module")
def running() -> Iterator[Standin]:
    with standin(runner=GitlabCiLocalRunner(timeout=120)) as server:
        yield server


def test_git_over_http_takes_tokens_as_gitlab_does(tmp_path: Path) -> None:
    with standin() as server:
        project_id = seed_project(server, "ml-team/model-build", {"README.md": "# hi\n"})
        other_id = seed_project(server, "ml-team/other", {"README.md": "# other\n"})
        url = f"{server.url}/ml-team/model-build.git"
        backend = server.backend

        answer = requests.get(f"{url}/info/refs?service=git-upload-pack", timeout=10)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Basic realm="GitLab"'
        refused = git("clone", url, str(tmp_path / "anonymous"), check=False)
        assert refused.returncode != 0
        wrong = git("clone", "-q", with_token(url, "glpat-wrong"), str(tmp_path / "wrong"), check=False)
        assert wrong.returncode != 0
        assert "HTTP Basic: Access denied" in requests.get(
            f"{url}/info/refs?service=git-upload-pack", auth=("oauth2", "glpat-wrong"), timeout=10).text

        for username in ("oauth2", "gitlab-ci-token", "anything"):  # the user name is not checked
            git("clone", "-q", with_token(url, server.token, username), str(tmp_path / username))

        project = backend.project(project_id)
        reader = backend.create_access_token(project, "reader", ["read_repository"], 20, None).token
        clone = tmp_path / "reader"
        git("clone", "-q", with_token(url, reader), str(clone))
        (clone / "README.md").write_text("# changed\n")
        git("commit", "-qam", "change", cwd=clone)
        denied = git("push", "origin", "HEAD:main", cwd=clone, check=False)
        assert denied.returncode != 0 and "You are not allowed to push code to this project." in denied.stderr

        reporter = backend.create_access_token(project, "reporter", ["api"], 20, None).token
        git("remote", "set-url", "origin", with_token(url, reporter), cwd=clone)
        denied = git("push", "origin", "HEAD:main", cwd=clone, check=False)
        assert "You are not allowed to push code" in denied.stderr

        developer = backend.create_access_token(project, "dev", ["write_repository"], 30, None).token
        git("remote", "set-url", "origin", with_token(url, developer), cwd=clone)
        pushed = git("push", "origin", "HEAD:feature", cwd=clone)
        assert "To create a merge request for feature, visit:" in pushed.stderr
        new_mr = "/ml-team/model-build/-/merge_requests/new?merge_request%5Bsource_branch%5D=feature"
        assert f"{server.url}{new_mr}" in pushed.stderr
        assert project.repo.branches()["feature"] == git("rev-parse", "HEAD", cwd=clone).stdout.strip()

        elsewhere = backend.create_access_token(backend.project(other_id), "x", ["api"], 40, None).token
        missing = requests.get(f"{url}/info/refs?service=git-upload-pack", auth=("oauth2", elsewhere),
                               timeout=10)
        assert missing.status_code == 404

        backend.update_project(project, {"visibility": "public"})
        git("clone", "-q", url, str(tmp_path / "public"))  # public projects clone without credentials


def test_the_merge_request_workflow_end_to_end(running: Standin, tmp_path: Path) -> None:
    server = running
    project_id = seed_project(server, "ml-team/review", {".gitlab-ci.yml": CI, "depth.txt": "4\n"})
    gl = client(server)
    project = gl.projects.get(project_id)
    [seeded] = settled(server, project_id, 1)
    assert seeded.source == "push" and {j.name for j in seeded.jobs} == {"show", "deploy"}

    clone = tmp_path / "clone"
    git("clone", "-q", with_token(project.http_url_to_repo, server.token), str(clone))
    git("checkout", "-q", "-b", "tune", cwd=clone)
    (clone / "depth.txt").write_text("3\n")
    git("commit", "-qam", "Depth 3", cwd=clone)
    git("push", "-q", "-u", "origin", "tune", cwd=clone)
    server.backend.wait_idle()
    assert len(server.backend.list_pipelines(server.backend.project(project_id))) == 1  # no rule admits it

    mr = project.mergerequests.create({"source_branch": "tune", "target_branch": "main", "title": "Depth 3"})
    mr_pipeline = settled(server, project_id, 2)[0]
    assert (mr_pipeline.source, mr_pipeline.ref, mr_pipeline.status) == (
        "merge_request_event", "refs/merge-requests/1/head", "success")
    assert [j.name for j in mr_pipeline.jobs] == ["show"]
    seen = "seen source=merge_request_event branch=unset ref=tune mr=1"
    assert seen in job_log(server, mr_pipeline, "show")
    assert [p.id for p in mr.pipelines.list()] == [mr_pipeline.id]

    (clone / "depth.txt").write_text("2\n")
    git("commit", "-qam", "Depth 2", cwd=clone)
    pushed = git("push", cwd=clone)
    hint = [line.split("remote:", 1)[-1].strip() for line in pushed.stderr.splitlines()]
    assert hint[1:3] == ["View merge request for tune:", mr.web_url]
    after_push = settled(server, project_id, 3)
    # The branch pipeline was filtered out by `when: never` (CI_OPEN_MERGE_REQUESTS), the MR one runs.
    assert [p.source for p in after_push] == ["merge_request_event", "merge_request_event", "push"]
    assert after_push[0].sha == git("rev-parse", "HEAD", cwd=clone).stdout.strip()

    bot = gl.projects.get(project_id).access_tokens.create(
        {"name": "model-review", "scopes": ["api"], "access_level": 20, "expires_at": "2099-01-01"})
    as_bot = gitlab.Gitlab(server.url, private_token=bot.token, timeout=10)
    as_bot.auth()
    bot_mr = as_bot.projects.get(project_id, lazy=True).mergerequests.get(mr.iid)
    note = bot_mr.notes.create({"body": "<!-- marker -->\nmse 4.1"})
    note.body = "<!-- marker -->\nmse 3.9"
    note.save()
    [listed] = mr.notes.list(get_all=True)
    assert as_bot.user is not None
    assert (listed.body, listed.author["username"]) == ("<!-- marker -->\nmse 3.9", as_bot.user.username)
    with pytest.raises(gitlab.GitlabError) as denied:
        bot_mr.merge()  # a Reporter may comment but not merge
    assert denied.value.response_code == 403
    with pytest.raises(gitlab.GitlabGetError) as hidden:
        as_bot.projects.get(seed_project(server, "ml-team/unrelated", {"a": "b"}))
    assert hidden.value.response_code == 404

    mr.merge(sha=after_push[0].sha)
    merged = gl.projects.get(project_id).mergerequests.get(mr.iid)
    assert merged.state == "merged"
    main = settled(server, project_id, 4)[0]
    assert (main.source, main.ref, main.sha) == ("push", "main", merged.merge_commit_sha)
    assert "seen source=push branch=main ref=main mr=none" in job_log(server, main, "show")
    commit = project.commits.get(merged.merge_commit_sha)
    assert commit.message.endswith(f"See merge request ml-team/review!{mr.iid}")
    assert [m["iid"] for m in commit.merge_requests()] == [mr.iid]

    [env] = project.environments.list(get_all=True)
    assert (env.name, project.environments.get(env.id).external_url) == (
        "staging", f"https://console.example/endpoints/{main.id}")
    deployments = project.deployments.list(environment="staging", get_all=True)
    assert [(d.status, d.sha, d.deployable["name"]) for d in deployments] == [
        ("success", seeded.sha, "deploy"), ("success", merged.merge_commit_sha, "deploy")]

    pipeline_page = requests.get(gl.projects.get(project_id).pipelines.get(main.id).web_url, timeout=10)
    assert pipeline_page.status_code == 200
    assert "deploy" in pipeline_page.text and "success" in pipeline_page.text
    job_page = requests.get(f"{project.web_url}/-/jobs/{main.jobs[0].id}", timeout=10)
    assert "seen source=push" in job_page.text or "ENDPOINT_CONSOLE_URL" in job_page.text
    mr_page = requests.get(mr.web_url, timeout=10).text
    assert "mse 3.9" in mr_page and "merged" in mr_page
    assert requests.get(f"{project.web_url}/-/nothing-here", timeout=10).status_code == 404
