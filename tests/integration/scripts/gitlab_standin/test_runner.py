"""Pipelines really run: the stand-in with GitlabCiLocalRunner executes a project's .gitlab-ci.yml."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gitlab
import pytest

from scripts.gitlab_standin import GitlabCiLocalRunner, Standin
from scripts.gitlab_standin.runner import DEFAULT_GITLAB_CI_LOCAL
from scripts.gitlab_standin.testing import client, standin

pytestmark = pytest.mark.skipif(
    not DEFAULT_GITLAB_CI_LOCAL.exists() or not shutil.which("rsync"),
    reason="needs node_modules/.bin/gitlab-ci-local (npm install) and rsync",
)

CI = """
stages: [build, test, deploy]
build:
  stage: build
  image: python:3.11-slim
  script:
    - echo "secret=$DEPLOY_SECRET model=$MODEL_PACKAGE_ARN"
    - mkdir -p out && echo "artifact-from-build" > out/result.txt
  artifacts:
    paths: [out/]
check:
  stage: test
  script:
    - cat out/result.txt
    - echo "source=$CI_PIPELINE_SOURCE project=$CI_PROJECT_PATH branch=$CI_COMMIT_BRANCH"
    - test "$FAIL_CHECK" != "yes"
  rules:
    - if: $CI_PIPELINE_SOURCE == "push"
      when: never
    - when: on_success
production:
  stage: deploy
  script:
    - cat out/result.txt
    - echo "deployed $MODEL_PACKAGE_ARN"
  rules:
    - if: $CI_PIPELINE_SOURCE == "push"
      when: never
    - when: manual
"""
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1"


def wait_jobs(server: Standin, pipeline_id: int) -> dict[str, str]:
    pipeline = server.backend.wait_for_pipeline(pipeline_id, timeout=90)
    return {job.name: job.status for job in pipeline.jobs}


@pytest.fixture(scope="module")
def running() -> object:
    with standin(runner=GitlabCiLocalRunner(timeout=120)) as server:
        yield server


def test_push_api_manual_play_and_failure(running: Standin) -> None:
    gl = client(running)
    project = gl.projects.create({"name": "deploy", "namespace_id": "ml-team", "default_branch": "main"})
    project.variables.create({"key": "DEPLOY_SECRET", "value": "Very-Secret-Value-42", "masked": True})
    project.commits.create({"branch": "main", "commit_message": "ci", "actions": [
        {"action": "create", "file_path": ".gitlab-ci.yml", "content": CI}]})

    # The commit started a push pipeline, in which rules keep only `build`.
    [push] = project.pipelines.list(get_all=True)
    assert push.source == "push"
    assert wait_jobs(running, push.id) == {"build": "success"}
    assert project.pipelines.get(push.id).status == "success"

    project.ci_pipeline_variables_minimum_override_role = "developer"
    project.save()
    started = time.monotonic()
    api = project.pipelines.create({"ref": "main", "variables": [{"key": "MODEL_PACKAGE_ARN", "value": ARN}]})
    assert time.monotonic() - started < 5  # answers before the jobs run
    assert wait_jobs(running, api.id) == {"build": "success", "check": "success", "production": "manual"}
    api = project.pipelines.get(api.id)
    assert api.status == "manual"  # `when: manual` inside rules blocks, as in GitLab

    jobs = {j.name: j for j in api.jobs.list(get_all=True)}
    build_trace = project.jobs.get(jobs["build"].id).trace().decode()
    assert f"model={ARN}" in build_trace
    assert "Very-Secret-Value-42" not in build_trace and "secret=[MASKED]" in build_trace
    check_trace = project.jobs.get(jobs["check"].id).trace().decode()
    assert "artifact-from-build" in check_trace
    assert "source=api project=ml-team/deploy branch=main" in check_trace

    project.jobs.get(jobs["production"].id).play()
    assert wait_jobs(running, api.id)["production"] == "success"
    prod = project.jobs.get(jobs["production"].id)
    assert "artifact-from-build" in prod.trace().decode() and f"deployed {ARN}" in prod.trace().decode()
    assert project.pipelines.get(api.id).status == "success"
    with pytest.raises(gitlab.GitlabJobPlayError):
        prod.play()

    failing = project.pipelines.create({"ref": "main", "variables": [{"key": "FAIL_CHECK", "value": "yes"}]})
    statuses = wait_jobs(running, failing.id)
    assert statuses["build"] == "success" and statuses["check"] == "failed"
    assert project.pipelines.get(failing.id).status == "failed"


def test_invalid_ci_file_is_refused_at_create(running: Standin) -> None:
    gl = client(running)
    project = gl.projects.create({"name": "broken", "namespace_id": "ml-team",
                                  "ci_pipeline_variables_minimum_override_role": "developer"})
    project.commits.create({"branch": "main", "commit_message": "ci", "actions": [
        {"action": "create", "file_path": ".gitlab-ci.yml", "content": "job:\n  script: 42: [\n"}]})
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        project.pipelines.create({"ref": "main"})
    assert refused.value.response_code == 400 and refused.value.error_message["base"]  # type: ignore[index]
    # The push of the broken file recorded a failed pipeline, as GitLab does for YAML errors.
    assert [(p.source, p.status) for p in project.pipelines.list(get_all=True)] == [("push", "failed")]


def test_jobs_do_not_read_the_host_users_bashrc(tmp_path: Path) -> None:
    """A started-from-nowhere shell (no SHLVL) with a ~/.bashrc that changes PATH, as pyenv's does."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text('export FROM_BASHRC=yes\nexport PATH="/nonexistent/shims:$PATH"\n')
    ci = "job:\n  script:\n    - echo \"bashrc=${FROM_BASHRC:-no} path=$PATH\"\n"
    runner = GitlabCiLocalRunner(timeout=120, env={"HOME": str(home), "SHLVL": "0"})
    with standin(runner=runner) as server:
        project = client(server).projects.create({"name": "dotfiles", "namespace_id": "ml-team"})
        project.commits.create({"branch": "main", "commit_message": "ci", "actions": [
            {"action": "create", "file_path": ".gitlab-ci.yml", "content": ci}]})
        [push] = project.pipelines.list(get_all=True)
        assert wait_jobs(server, push.id) == {"job": "success"}
        [job] = project.pipelines.get(push.id).jobs.list(get_all=True)
        trace = project.jobs.get(job.id).trace().decode()
    assert "bashrc=no" in trace and "/nonexistent/shims" not in trace
