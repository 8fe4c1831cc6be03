"""Protected branches and pipeline triggers on the stand-in, as GitLab enforces them (models.Protection):
python-gitlab for the API, plain git for pushes, the backend's pipeline contexts for protected variables.

Sources: https://docs.gitlab.com/user/project/repository/branches/protected/,
https://docs.gitlab.com/api/protected_branches/, https://docs.gitlab.com/api/pipeline_triggers/,
https://docs.gitlab.com/ci/variables/#protect-a-cicd-variable, gitlab-org/gitlab!188008 (merge request
pipelines between protected branches), lib/gitlab/checks/branch_check.rb (the push refusals).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import gitlab
import pytest
import requests

from scripts.gitlab_standin import Standin
from scripts.gitlab_standin.models import (
    COMMIT_PROTECTED,
    DELETE_PROTECTED,
    DEVELOPER,
    FORCE_PUSH_PROTECTED,
    MAINTAINER,
    PUSH_PROTECTED,
    Variable,
    protect_branch,
)
from scripts.gitlab_standin.testing import client, seed_project, standin, with_token

IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.invalid",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}
CI = "job:\n  script: [echo]\n"


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **IDENTITY}, capture_output=True, text=True, timeout=60,
        check=check,
    )  # fmt: skip


@pytest.fixture
def server() -> Standin:  # type: ignore[misc]
    with standin() as running:
        yield running


def test_protecting_a_branch_twice_is_a_409_and_unprotecting_an_unknown_one_a_404(server: Standin) -> None:
    project_id = seed_project(server, "ml-team/deploy", {".gitlab-ci.yml": CI})
    project = client(server).projects.get(project_id)
    created = project.protectedbranches.create(
        {"name": "main", "push_access_level": 40, "merge_access_level": 40}
    )
    assert created.push_access_levels[0]["access_level"] == MAINTAINER
    with pytest.raises(gitlab.GitlabCreateError) as again:
        project.protectedbranches.create({"name": "main"})
    assert again.value.response_code == 409
    assert "Protected branch 'main' already exists" in str(again.value)
    assert [b.name for b in project.protectedbranches.list()] == ["main"]
    with pytest.raises(gitlab.GitlabDeleteError) as unknown:
        project.protectedbranches.delete("release")
    assert unknown.value.response_code == 404


def test_a_bot_below_maintainer_cannot_protect_branches_or_manage_triggers(server: Standin) -> None:
    project_id = seed_project(server, "ml-team/deploy", {".gitlab-ci.yml": CI})
    backend = server.backend
    developer = backend.create_access_token(
        backend.project(project_id), "dev", ["api"], DEVELOPER, None
    ).token
    as_developer = gitlab.Gitlab(server.url, private_token=developer, timeout=10).projects.get(project_id)
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        as_developer.protectedbranches.create({"name": "main"})
    assert refused.value.response_code == 403
    with pytest.raises(gitlab.GitlabCreateError):
        as_developer.triggers.create({"description": "mine"})


def _pipeline_variables(server: Standin, project_id: int, ref: str) -> dict[str, str]:
    backend = server.backend
    pipeline = backend.create_pipeline(backend.project(project_id), ref, [], source="web")
    assert pipeline.context is not None
    return dict(pipeline.context.variables)


def test_protected_variables_reach_only_pipelines_of_protected_branches(server: Standin) -> None:
    project_id = seed_project(server, "ml-team/deploy", {".gitlab-ci.yml": CI})
    backend = server.backend
    project = backend.project(project_id)
    backend.create_branch(project, "feature", "main")
    backend.create_variable(project, Variable("PROD_KEY", "secret-value-1", masked=True, protected=True))
    backend.create_variable(project, Variable("PLAIN", "everyone"))

    assert _pipeline_variables(server, project_id, "main") == {"PLAIN": "everyone"}  # main not protected yet
    client(server).projects.get(project_id).protectedbranches.create({"name": "main"})
    on_main = _pipeline_variables(server, project_id, "main")
    assert on_main["PROD_KEY"] == "secret-value-1" and on_main["PLAIN"] == "everyone"
    assert "PROD_KEY" not in _pipeline_variables(server, project_id, "feature")


def test_a_merge_request_pipeline_is_protected_only_between_protected_branches(server: Standin) -> None:
    project_id = seed_project(server, "ml-team/deploy", {".gitlab-ci.yml": CI})
    backend = server.backend
    project = backend.project(project_id)
    backend.create_branch(project, "feature", "main")
    backend.create_branch(project, "release", "main")
    protect_branch(backend, project, "main", MAINTAINER, MAINTAINER)
    user = backend.user
    from_feature = backend.create_merge_request(project, user, source_branch="feature", target_branch="main",
                                                title="t", description="")  # fmt: skip
    assert not backend.ref_is_protected(project, from_feature.ref_path, from_feature)
    from_release = backend.create_merge_request(project, user, source_branch="release", target_branch="main",
                                                title="t", description="")  # fmt: skip
    assert not backend.ref_is_protected(project, from_release.ref_path, from_release)
    protect_branch(backend, project, "release", MAINTAINER, MAINTAINER)
    assert backend.ref_is_protected(project, from_release.ref_path, from_release)


def test_a_trigger_token_starts_a_pipeline_without_a_user_token_and_only_in_its_project(
    server: Standin,
) -> None:
    # Trigger variables are pipeline variables: the project must let the trigger's owner set them.
    project_id = seed_project(
        server,
        "ml-team/deploy",
        {".gitlab-ci.yml": CI},
        ci_pipeline_variables_minimum_override_role="maintainer",
    )
    other_id = seed_project(server, "ml-team/other", {".gitlab-ci.yml": CI})
    trigger = client(server).projects.get(project_id).triggers.create({"description": "approvals"})
    url = f"{server.url}/api/v4/projects/{project_id}/trigger/pipeline"
    started = requests.post(
        url, data={"token": trigger.token, "ref": "main", "variables[X]": "1"}, timeout=10
    )
    assert started.status_code == 201, started.text
    assert started.json()["source"] == "trigger"
    assert server.backend.list_pipelines(server.backend.project(project_id))[0].variables == [
        {"key": "X", "value": "1", "variable_type": "env_var"}
    ]
    elsewhere = requests.post(
        f"{server.url}/api/v4/projects/{other_id}/trigger/pipeline",
        data={"token": trigger.token, "ref": "main"}, timeout=10,
    )  # fmt: skip
    assert elsewhere.status_code == 404
    client(server).projects.get(project_id).triggers.delete(trigger.id)
    revoked = requests.post(url, data={"token": trigger.token, "ref": "main"}, timeout=10)
    assert revoked.status_code == 404
    # Without a trigger token the endpoint is not reachable with nothing at all.
    assert requests.post(url, data={"ref": "main"}, timeout=10).status_code == 400


def test_pushes_to_a_protected_branch_follow_its_push_level(server: Standin, tmp_path: Path) -> None:
    project_id = seed_project(server, "ml-team/deploy", {".gitlab-ci.yml": CI})
    backend = server.backend
    project = backend.project(project_id)
    protect_branch(backend, project, "main", MAINTAINER, MAINTAINER)  # Maintainers push and merge
    url = f"{server.url}/ml-team/deploy.git"
    developer = backend.create_access_token(project, "dev", ["write_repository"], DEVELOPER, None).token
    maintainer = backend.create_access_token(project, "lead", ["write_repository"], MAINTAINER, None).token

    clone = tmp_path / "clone"
    git("clone", "-q", with_token(url, developer), str(clone))
    (clone / "model.txt").write_text("v2\n")
    git("add", ".", cwd=clone)
    git("commit", "-qm", "change", cwd=clone)
    refused = git("push", "origin", "HEAD:main", cwd=clone, check=False)
    assert refused.returncode != 0
    assert f"GitLab: {PUSH_PROTECTED}" in refused.stderr and "pre-receive hook declined" in refused.stderr
    assert git("push", "-q", "origin", "HEAD:feature", cwd=clone).returncode == 0  # unprotected: fine

    git("remote", "set-url", "origin", with_token(url, maintainer), cwd=clone)
    git("push", "-q", "origin", "HEAD:main", cwd=clone)
    assert project.repo.branches()["main"] == git("rev-parse", "HEAD", cwd=clone).stdout.strip()

    # Rewriting or deleting the protected branch is refused whoever pushes, the admin too.
    git("remote", "set-url", "origin", with_token(url, server.token), cwd=clone)
    git("reset", "-q", "--hard", "HEAD~1", cwd=clone)
    (clone / "other.txt").write_text("x\n")
    git("add", ".", cwd=clone)
    git("commit", "-qm", "rewrite", cwd=clone)
    forced = git("push", "--force", "origin", "HEAD:main", cwd=clone, check=False)
    assert forced.returncode != 0 and FORCE_PUSH_PROTECTED in forced.stderr
    deleted = git("push", "origin", ":main", cwd=clone, check=False)
    assert deleted.returncode != 0 and DELETE_PROTECTED in deleted.stderr


def test_the_commits_api_and_merges_into_a_protected_branch_need_its_levels(server: Standin) -> None:
    project_id = seed_project(server, "ml-team/deploy", {".gitlab-ci.yml": CI})
    backend = server.backend
    project = backend.project(project_id)
    protect_branch(backend, project, "main", MAINTAINER, MAINTAINER)
    developer = backend.create_access_token(project, "dev", ["api"], DEVELOPER, None).token
    as_developer = gitlab.Gitlab(server.url, private_token=developer, timeout=10).projects.get(project_id)
    change = {"action": "create", "file_path": "x.txt", "content": "x"}
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        as_developer.commits.create({"branch": "main", "commit_message": "m", "actions": [change]})
    assert refused.value.response_code == 403 and COMMIT_PROTECTED in str(refused.value)
    as_developer.commits.create({"branch": "feature", "start_branch": "main", "commit_message": "m",
                                 "actions": [change]})  # fmt: skip

    mr = as_developer.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "t"}
    )
    with pytest.raises(gitlab.GitlabAuthenticationError) as merge_refused:  # python-gitlab's error for 401
        mr.merge()
    assert merge_refused.value.response_code == 401
    assert backend.merge_request(project, mr.iid).state == "opened"
    client(server).projects.get(project_id).mergerequests.get(mr.iid).merge()  # a Maintainer+ may
    assert backend.merge_request(project, mr.iid).state == "merged"
