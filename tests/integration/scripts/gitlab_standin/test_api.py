"""python-gitlab 8.x against the stand-in over real HTTP: what the Lambdas and the sandbox rely on."""

from __future__ import annotations

import base64
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from scripts.gitlab_standin import Standin
from scripts.gitlab_standin.testing import (
    b64,
    client,
    closed_port_url,
    gitlab_standin,
    seed_project,
    with_token,
)

__all__ = ["gitlab_standin"]  # the fixture, imported for pytest


def _message(raised: pytest.ExceptionInfo[Any]) -> Any:
    """GitLab's error body as python-gitlab parsed it (typed str, but a dict or list for JSON bodies)."""
    return raised.value.error_message


def _json(answer: Any) -> dict[str, Any]:
    assert isinstance(answer, dict), answer
    return answer


BINARY = bytes(range(256)) * 4 + b"\x89PNG\r\n\x1a\n\x00"


def make_project(gl: gitlab.Gitlab, name: str = "model-build", **extra: object):  # type: ignore[no-untyped-def]
    group = gl.groups.get("ml-team")
    return gl.projects.create({"name": name, "path": name, "namespace_id": group.id,
                               "initialize_with_readme": False, "default_branch": "main", **extra})


def test_user_group_and_namespace_lookups(gitlab_standin: Standin) -> None:
    gitlab_standin.create_group("ml/sub-team")
    gl = client(gitlab_standin)
    gl.auth()
    assert gl.user is not None and gl.user.username == "standin-user"
    group = gl.groups.get("ml/sub-team")  # python-gitlab url-encodes the slash
    assert group.full_path == "ml/sub-team"
    assert gl.groups.get(group.id).full_path == "ml/sub-team"
    assert gl.namespaces.get("ml-team").kind == "group"
    with pytest.raises(gitlab.GitlabGetError) as missing:
        gl.groups.get("no-such-group")
    assert missing.value.response_code == 404 and "Group Not Found" in str(missing.value.error_message)


def test_project_create_get_update_archive_delete(gitlab_standin: Standin) -> None:
    gl = client(gitlab_standin)
    project = make_project(gl, description="d", topics=["sagemaker-project-p-123"], visibility="private")
    assert project.path_with_namespace == "ml-team/model-build"
    assert project.namespace["full_path"] == "ml-team"
    assert project.http_url_to_repo == f"{gitlab_standin.url}/ml-team/model-build.git"
    assert project.web_url == f"{gitlab_standin.url}/ml-team/model-build"
    assert project.ssh_url_to_repo.endswith(":ml-team/model-build.git")
    assert project.ci_pipeline_variables_minimum_override_role == "no_one_allowed"
    assert project.archived is False and project.default_branch == "main"

    by_path = gl.projects.get("ml-team/model-build")
    assert by_path.id == project.id and by_path.topics == ["sagemaker-project-p-123"]
    by_path.description = "new"
    by_path.topics = ["a", "b"]
    by_path.ci_pipeline_variables_minimum_override_role = "developer"
    by_path.save()
    again = gl.projects.get(project.id)
    assert (again.description, again.topics) == ("new", ["a", "b"])
    assert again.ci_pipeline_variables_minimum_override_role == "developer"

    again.archive()
    assert gl.projects.get(project.id).archived is True
    again.unarchive()
    assert gl.projects.get(project.id).archived is False
    gl.projects.delete(project.id)
    assert gitlab_standin.requests("DELETE")[-1]["status"] == 202
    with pytest.raises(gitlab.GitlabGetError) as gone:
        gl.projects.get(project.id)
    assert gone.value.response_code == 404 and _message(gone) == "404 Project Not Found"


def test_existing_path_is_refused_with_400_has_already_been_taken(gitlab_standin: Standin) -> None:
    gl = client(gitlab_standin)
    make_project(gl)
    with pytest.raises(gitlab.GitlabCreateError) as taken:
        make_project(gl)
    assert taken.value.response_code == 400
    assert _message(taken)["path"] == ["has already been taken"]
    assert _message(taken)["name"] == ["has already been taken"]


def test_wrong_or_missing_token_is_401(gitlab_standin: Standin) -> None:
    bad = gitlab.Gitlab(gitlab_standin.url, private_token="glpat-wrong", timeout=5)
    with pytest.raises(gitlab.GitlabAuthenticationError) as denied:
        bad.projects.get(1)
    assert denied.value.response_code == 401
    anonymous = requests.get(f"{gitlab_standin.api_url}/user", timeout=5)
    assert (anonymous.status_code, anonymous.json()) == (401, {"message": "401 Unauthorized"})


def test_variables_crud_and_masking_rule(gitlab_standin: Standin) -> None:
    project = make_project(client(gitlab_standin))
    project.variables.create({"key": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
                              "masked": True, "protected": True})
    project.variables.create({"key": "AWS_REGION", "value": "us-east-1"})
    with pytest.raises(gitlab.GitlabCreateError) as unmaskable:
        project.variables.create({"key": "SHORT", "value": "abc", "masked": True})
    assert unmaskable.value.response_code == 400
    assert _message(unmaskable) == {"value": ["is invalid"]}
    with pytest.raises(gitlab.GitlabCreateError) as duplicate:
        project.variables.create({"key": "AWS_REGION", "value": "eu-west-1"})
    assert _message(duplicate) == {"key": ["(AWS_REGION) has already been taken"]}

    secret = project.variables.get("AWS_SECRET_ACCESS_KEY")
    assert (secret.masked, secret.protected, secret.variable_type) == (True, True, "env_var")
    region = project.variables.get("AWS_REGION")
    region.value = "eu-west-1"
    region.save()
    project.variables.update("AWS_REGION", {"value": "eu-central-1"})
    assert project.variables.get("AWS_REGION").value == "eu-central-1"
    project.variables.delete("AWS_REGION")
    assert [v.key for v in project.variables.list(get_all=True)] == ["AWS_SECRET_ACCESS_KEY"]
    with pytest.raises(gitlab.GitlabGetError) as missing:
        project.variables.get("AWS_REGION")
    assert _message(missing) == "404 Variable Not Found"


def test_binary_commit_reads_back_byte_exact_and_clones(gitlab_standin: Standin, tmp_path: Path) -> None:
    project = make_project(client(gitlab_standin))
    commit = project.commits.create({"branch": "main", "commit_message": "Seed", "actions": [
        {"action": "create", "file_path": "README.md", "content": "# seed\n"},
        {"action": "create", "file_path": "assets/logo.png", "content": b64(BINARY), "encoding": "base64"},
    ]})
    assert commit.title == "Seed" and commit.parent_ids == []
    got = project.files.get("assets/logo.png", ref="main")
    assert got.decode() == BINARY and got.size == len(BINARY)
    assert project.files.raw("assets/logo.png", ref="main") == BINARY
    with pytest.raises(gitlab.GitlabGetError) as missing:
        project.files.get("nope.txt", ref="main")
    assert _message(missing) == "404 File Not Found"

    second = project.commits.create({"branch": "main", "commit_message": "Update", "actions": [
        {"action": "update", "file_path": "README.md", "content": "# changed\n"},
        {"action": "delete", "file_path": "assets/logo.png"},
    ]})
    assert second.parent_ids == [commit.id]
    branches = project.branches.list(get_all=True)
    assert [(b.name, b.commit["id"], b.default) for b in branches] == [("main", second.id, True)]

    clone = tmp_path / "clone"
    url = with_token(project.http_url_to_repo, gitlab_standin.token)
    subprocess.run(["git", "clone", "-q", url, str(clone)], check=True, timeout=60)
    assert (clone / "README.md").read_text() == "# changed\n"
    assert not (clone / "assets").exists()
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit.id], check=True)
    assert (clone / "assets" / "logo.png").read_bytes() == BINARY


def test_tree_pagination_gets_every_entry_without_warning(gitlab_standin: Standin) -> None:
    files = {f"src/file{i:02d}.txt": f"{i}" for i in range(45)}
    project_id = seed_project(gitlab_standin, "ml-team/many", files)
    project = client(gitlab_standin).projects.get(project_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = project.repository_tree(recursive=True, get_all=True)
    assert sorted(e["path"] for e in tree) == sorted([*files, "src"])
    first_page = requests.get(f"{gitlab_standin.api_url}/projects/{project_id}/repository/tree",
                              params={"recursive": "true", "per_page": "20"},
                              headers={"PRIVATE-TOKEN": gitlab_standin.token}, timeout=5)
    assert first_page.headers["X-Total"] == "46" and first_page.headers["X-Next-Page"] == "2"
    assert 'rel="next"' in first_page.headers["Link"] and len(first_page.json()) == 20


def test_429_retry_after_is_honoured_by_python_gitlab(gitlab_standin: Standin) -> None:
    gl = client(gitlab_standin)
    gitlab_standin.add_fault(r"/api/v4/projects$", 429, method="POST", retry_after=1, count=1)
    started = time.monotonic()
    project = make_project(gl)
    assert time.monotonic() - started >= 1.0
    assert project.path == "model-build"
    assert [r["status"] for r in gitlab_standin.requests("POST", r"/projects$")] == [429, 201]


def test_500s_then_success_only_with_retry_transient_errors(gitlab_standin: Standin) -> None:
    gitlab_standin.add_fault(r"/api/v4/groups/", 500, count=2)
    patient = client(gitlab_standin, retry_transient_errors=True)
    assert patient.groups.get("ml-team").full_path == "ml-team"
    assert [r["status"] for r in gitlab_standin.requests("GET", "/groups/")] == [500, 500, 200]

    gitlab_standin.add_fault(r"/api/v4/groups/", 503, count=1)
    with pytest.raises(gitlab.GitlabGetError) as failed:
        client(gitlab_standin).groups.get("ml-team")
    assert failed.value.response_code == 503


def test_fault_after_processing_makes_a_retried_create_meet_its_own_project(gitlab_standin: Standin) -> None:
    gitlab_standin.add_fault(r"/api/v4/projects$", 502, method="POST", after=True)
    with pytest.raises(gitlab.GitlabCreateError) as retried:
        make_project(client(gitlab_standin, retry_transient_errors=True))
    assert _message(retried)["path"] == ["has already been taken"]
    assert [r["status"] for r in gitlab_standin.requests("POST", r"/projects$")] == [502, 400]
    assert client(gitlab_standin).projects.get("ml-team/model-build").name == "model-build"


def test_faults_over_http_slow_responses_and_unreachable_server(gitlab_standin: Standin) -> None:
    added = requests.post(f"{gitlab_standin.url}/-/standin/faults",
                          json={"path_regex": "/user$", "delay": 1.5, "count": 1}, timeout=5)
    assert added.status_code == 201
    with pytest.raises(requests.exceptions.Timeout):
        client(gitlab_standin, timeout=0.5).auth()
    requests.post(f"{gitlab_standin.url}/-/standin/faults",
                  json={"path_regex": "/projects/1$", "status": 409, "body": {"message": "busy"}}, timeout=5)
    with pytest.raises(gitlab.GitlabGetError) as conflict:
        client(gitlab_standin).projects.get(1)
    assert (conflict.value.response_code, conflict.value.error_message) == (409, "busy")

    dead = gitlab.Gitlab(closed_port_url(), private_token="x", timeout=2)
    with pytest.raises(requests.exceptions.ConnectionError):
        dead.auth()


def test_reset_clears_projects_and_faults(gitlab_standin: Standin) -> None:
    gl = client(gitlab_standin)
    make_project(gl)
    gitlab_standin.add_fault("/user$", 500, count=None)
    assert requests.post(f"{gitlab_standin.url}/-/standin/reset", timeout=5).status_code == 204
    gl.auth()
    assert gl.projects.list(get_all=True) == []
    assert gl.groups.get("ml-team").full_path == "ml-team"


def test_pipeline_variables_refused_until_project_allows_them(gitlab_standin: Standin) -> None:
    project = make_project(client(gitlab_standin))
    project.files.create({"file_path": ".gitlab-ci.yml", "branch": "main",
                          "content": "j:\n  script: [echo]\n", "commit_message": "ci"})
    variables = [{"key": "MODEL_PACKAGE_ARN", "value": "arn:aws:sagemaker:us-east-1:1:model-package/g/1"}]
    with pytest.raises(gitlab.GitlabCreateError) as refused:
        project.pipelines.create({"ref": "main", "variables": variables})
    assert refused.value.response_code == 400
    assert _message(refused) == {"base": ["Insufficient permissions to set pipeline variables"]}
    with pytest.raises(gitlab.GitlabCreateError) as bad_ref:
        project.pipelines.create({"ref": "nope"})
    assert _message(bad_ref) == {"base": ["Reference not found"]}

    project.ci_pipeline_variables_minimum_override_role = "developer"
    project.save()
    pipeline = project.pipelines.create({"ref": "main", "variables": variables})
    assert (pipeline.status, pipeline.ref, pipeline.source) == ("created", "main", "api")
    assert pipeline.variables.list(get_all=True)[0].value == variables[0]["value"]
    assert [p.id for p in project.pipelines.list(get_all=True)] == [pipeline.id]


def test_cli_prints_url_and_token_and_serves(tmp_path: Path) -> None:
    env = {"GITLAB_STANDIN_TOKEN": "glpat-cli-token", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [str(Path(".venv/bin/python").resolve()), "-m", "scripts.gitlab_standin", "--port", "0",
         "--data-dir", str(tmp_path / "data"), "--group", "ml-team"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).resolve().parents[4],
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().split("=", 1)[1]
        token = proc.stdout.readline().strip().split("=", 1)[1]
        assert token == "glpat-cli-token"
        gl = gitlab.Gitlab(url, private_token=token, timeout=5)
        assert gl.groups.get("ml-team").full_path == "ml-team"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_base64_helper_matches_commit_encoding() -> None:
    assert base64.b64decode(b64(BINARY)) == BINARY


def test_token_never_reaches_the_server_log(capfd: pytest.CaptureFixture[str]) -> None:
    from scripts.gitlab_standin.testing import standin

    with standin(verbose=True, tokens=["glpat-do-not-log-me"]) as server:
        gl = client(server)
        gl.auth()
        requests.get(f"{server.api_url}/user", params={"private_token": "glpat-do-not-log-me"}, timeout=5)
        requests.get(f"{server.api_url}/user", headers={"PRIVATE-TOKEN": "glpat-wrong-one"}, timeout=5)
    err = capfd.readouterr().err
    assert "GET /api/v4/user 200" in err  # the log exists...
    assert "glpat-" not in err  # ...and holds no token, right or wrong


def test_pipeline_names_come_from_workflow_name_and_filter_exactly(gitlab_standin: Standin) -> None:
    gl = client(gitlab_standin)
    project = make_project(gl, ci_pipeline_variables_minimum_override_role="developer")
    ci = 'workflow:\n  name: "deploy $DEPLOY_PIPELINE_NAME on ${CI_COMMIT_BRANCH}"\nj:\n  script: [echo]\n'
    project.files.create(
        {"file_path": ".gitlab-ci.yml", "branch": "main", "content": ci, "commit_message": "ci"}
    )
    first = project.pipelines.create(
        {"ref": "main", "variables": [{"key": "DEPLOY_PIPELINE_NAME", "value": "v3"}]}
    )
    project.pipelines.create({"ref": "main", "variables": [{"key": "DEPLOY_PIPELINE_NAME", "value": "v4"}]})
    assert first.name == "deploy v3 on main"
    found = project.pipelines.list(name="deploy v3 on main", get_all=True)
    assert [p.id for p in found] == [first.id]
    assert project.pipelines.list(name="deploy v3", get_all=True) == []  # exact, not a prefix
    assert len(project.pipelines.list(get_all=True)) == 2


def test_a_ci_file_without_workflow_name_leaves_pipelines_unnamed(gitlab_standin: Standin) -> None:
    project = make_project(client(gitlab_standin))
    project.files.create(
        {"file_path": ".gitlab-ci.yml", "branch": "main", "content": "j:\n  script: [echo]\n",
         "commit_message": "ci"}
    )
    assert project.pipelines.create({"ref": "main"}).name is None


def test_personal_access_tokens_self_shows_the_expiry_and_an_expired_token_is_401(
    gitlab_standin: Standin,
) -> None:
    gl = client(gitlab_standin)
    gitlab_standin.backend.token_expires_at = "2099-01-31"
    assert _json(gl.http_get("/personal_access_tokens/self"))["expires_at"] == "2099-01-31"
    project = make_project(gl)
    read = project.access_tokens.create(
        {"name": "reader", "scopes": ["read_api"], "access_level": 20, "expires_at": "2098-12-31"}
    )
    reader = gitlab.Gitlab(gitlab_standin.url, private_token=read.token, timeout=5)
    assert _json(reader.http_get("/personal_access_tokens/self"))["expires_at"] == "2098-12-31"
    gitlab_standin.backend.token_expires_at = "2020-01-01"
    with pytest.raises(gitlab.GitlabAuthenticationError):
        gl.auth()


def test_skip_lets_n_answers_through_before_the_fault(gitlab_standin: Standin) -> None:
    gitlab_standin.add_fault("/user$", 503, skip=2, count=None)
    gl = client(gitlab_standin)
    gl.auth()
    gl.auth()
    with pytest.raises(gitlab.GitlabGetError) as failed:
        gl.auth()
    assert failed.value.response_code == 503
