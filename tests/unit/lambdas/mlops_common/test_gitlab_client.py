"""The adapter: bounded retries, capped Retry-After, and one status-code-based error translation."""

from __future__ import annotations

import pytest
import requests
import responses
from mlops_common.errors import (
    GitLabAuthError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabRejected,
    GitLabUnavailable,
)
from mlops_common.gitlab_client import GitLab, GitLabSettings, Namespace, Variable

from tests.unit.lambdas.helpers import API, TOKEN, project_json, sent_json, sent_timeout

PROJECT = f"{API}/projects/ml-team%2Fabalone-model-build"


def test_every_request_sends_the_token_header_and_a_timeout(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(PROJECT, json=project_json(7, "ml-team/abalone-model-build", ["t"]))
    project = gl.find_project("ml-team/abalone-model-build")
    assert project is not None and project.id == 7 and project.topics == ("t",)
    assert rsps.calls[0].request.headers["PRIVATE-TOKEN"] == TOKEN
    assert sent_timeout(rsps.calls[0].request) == 5


def test_missing_project_is_none_not_an_error(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(PROJECT, status=404, json={"message": "404 Project Not Found"})
    assert gl.find_project("ml-team/abalone-model-build") is None


def test_401_names_the_secret_to_check(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/groups/ml-team", status=401, json={"message": "401 Unauthorized"})
    with pytest.raises(GitLabAuthError) as caught:
        gl.group("ml-team")
    assert str(caught.value).startswith("GitLab token rejected (401)")
    assert str(caught.value).endswith("check secret gitlab-token")
    assert len(rsps.calls) == 1  # authentication errors are not retried


def test_404_group_points_at_the_parameter(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/groups/ml%2Fteam", status=404, json={"message": "404 Group Not Found"})
    with pytest.raises(
        GitLabNotFound, match=r"^GitLab group 'ml/team' not found \(404\): check the GitLabGroup"
    ):
        gl.group("ml/team")


def test_numeric_group_is_looked_up_by_id(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{API}/groups/42", json={"id": 42, "full_path": "ml/team"})
    assert gl.group("42") == Namespace(42, "ml/team")


def test_403_says_which_role_the_token_needs(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.post(f"{API}/projects", status=403, json={"message": "403 Forbidden"})
    with pytest.raises(GitLabForbidden, match="Maintainer role on namespace 'ml-team'"):
        gl.create_project(Namespace(3, "ml-team"), "x", "d", ["t"])


def test_400_already_taken_is_rejected_with_gitlabs_reason(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.post(
        f"{API}/projects",
        status=400,
        json={"message": {"name": ["has already been taken"], "path": ["has already been taken"]}},
    )
    with pytest.raises(GitLabRejected) as caught:
        gl.create_project(Namespace(3, "ml-team"), "x", "d", ["t"])
    assert (
        "creating project 'ml-team/x' (400: name has already been taken; path has already been taken)"
        in str(caught.value)
    )
    assert len(rsps.calls) == 1


def test_429_honours_retry_after_but_caps_the_wait(
    gl: GitLab, rsps: responses.RequestsMock, sleeps: list[float]
) -> None:
    rsps.get(PROJECT, status=429, headers={"Retry-After": "120"}, json={"message": "429"})
    rsps.get(PROJECT, status=429, headers={"Retry-After": "1"}, json={"message": "429"})
    rsps.get(PROJECT, json=project_json(7, "ml-team/abalone-model-build"))
    assert gl.find_project("ml-team/abalone-model-build") is not None
    assert sleeps == [3, 1]  # 120 s capped at max_retry_wait, then the server's own 1 s


def test_429_that_never_ends_is_unavailable_after_bounded_attempts(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    rsps.get(PROJECT, status=429, headers={"Retry-After": "1"}, json={"message": "429"})
    with pytest.raises(GitLabUnavailable, match=r"still rate-limiting \(429\) after 3 attempts"):
        gl.find_project("ml-team/abalone-model-build")
    assert len(rsps.calls) == 3


def test_500s_then_success_is_retried(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(PROJECT, status=500, json={"message": "500"})
    rsps.get(PROJECT, status=502, json={"message": "502"})
    rsps.get(PROJECT, json=project_json(7, "ml-team/abalone-model-build"))
    project = gl.find_project("ml-team/abalone-model-build")
    assert project is not None and project.id == 7
    assert len(rsps.calls) == 3


def test_persistent_5xx_is_unavailable(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(PROJECT, status=503, json={"message": "503"})
    with pytest.raises(GitLabUnavailable, match=r"failing \(HTTP 503\) after 3 attempts"):
        gl.find_project("ml-team/abalone-model-build")
    assert len(rsps.calls) == 3


def test_connection_error_names_the_server_and_attempts(gl: GitLab, rsps: responses.RequestsMock) -> None:
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    rsps.get(PROJECT, body=refused)
    with pytest.raises(GitLabUnavailable) as caught:
        gl.find_project("ml-team/abalone-model-build")
    assert str(caught.value) == (
        "GitLab at https://gitlab.example.com unreachable after 3 attempts while reading project "
        "'ml-team/abalone-model-build': Connection refused"
    )
    assert len(rsps.calls) == 3


def test_no_request_starts_after_the_deadline(rsps: responses.RequestsMock) -> None:
    late = GitLab(GitLabSettings(url="https://gitlab.example.com", token_source="s", deadline=0.0), TOKEN)
    with pytest.raises(GitLabUnavailable, match="out of time"):
        late.find_project(1)
    assert not rsps.calls


def test_variables_are_listed_with_their_flags(gl: GitLab, rsps: responses.RequestsMock) -> None:
    rsps.get(
        f"{API}/projects/7/variables",
        json=[
            {
                "key": "A",
                "value": "1",
                "masked": False,
                "protected": False,
                "raw": True,
                "environment_scope": "*",
            },
            {
                "key": "B",
                "value": "x",
                "masked": True,
                "protected": True,
                "raw": True,
                "environment_scope": "prod",
            },
        ],
    )
    assert gl.variables(7) == {"A": Variable("A", "1")}


def test_pipeline_is_created_with_ref_and_variables_in_one_call(
    gl: GitLab, rsps: responses.RequestsMock
) -> None:
    rsps.post(f"{API}/projects/9/pipeline", status=201, json={"id": 55, "web_url": "https://g/p/55"})
    pipeline = gl.create_pipeline(9, "main", {"K": "v"})
    assert (pipeline.id, pipeline.web_url) == (55, "https://g/p/55")
    assert len(rsps.calls) == 1
    assert sent_json(rsps.calls[0].request) == {
        "ref": "main",
        "variables": [{"key": "K", "value": "v"}],
    }


# --- one deadline and safe retries -------------------------------------------------------------------
def bounded(
    *,
    deadline: float | None = None,
    max_retries: int = 2,
    max_retry_wait: float = 5.0,
    retry_posts: bool = True,
) -> GitLab:
    settings = GitLabSettings(
        url="https://gitlab.example.com",
        token_source="gitlab-token",
        timeout=5,
        max_retries=max_retries,
        max_retry_wait=max_retry_wait,
        deadline=deadline,
        retry_posts=retry_posts,
    )
    return GitLab(settings, TOKEN)


def test_a_request_with_less_than_a_second_left_is_not_started(rsps: responses.RequestsMock) -> None:
    import time

    from mlops_common.errors import GitLabOutOfTime

    client = bounded(deadline=time.monotonic() + 0.5)
    with pytest.raises(GitLabOutOfTime, match="out of time before the Lambda timeout"):
        client.group("ml-team")
    assert not rsps.calls


def test_each_request_is_cut_to_the_time_left(rsps: responses.RequestsMock) -> None:
    import time

    rsps.get(f"{API}/groups/ml-team", json={"id": 3, "full_path": "ml-team"})
    bounded(deadline=time.monotonic() + 3).group("ml-team")
    assert 2 < sent_timeout(rsps.calls[0].request) <= 3


def test_a_retry_that_would_wait_past_the_deadline_is_not_made(
    rsps: responses.RequestsMock, sleeps: list[float]
) -> None:
    import time

    from mlops_common.errors import GitLabOutOfTime

    rsps.get(f"{API}/groups/ml-team", status=429, headers={"Retry-After": "4"}, json={"message": "429"})
    with pytest.raises(GitLabOutOfTime):
        bounded(deadline=time.monotonic() + 3, max_retry_wait=10).group("ml-team")
    assert len(rsps.calls) == 1 and sleeps == []


def test_a_post_that_may_have_been_applied_is_not_resent_when_posts_are_unsafe(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=502, json={"message": "502"})
    with pytest.raises(GitLabUnavailable, match=r"failing \(HTTP 502\) after 1 attempt while"):
        bounded(retry_posts=False).run_trigger(12, "main", "glptt-x", {})
    assert len(rsps.calls) == 1


def test_a_post_refused_before_sending_is_retried_even_when_posts_are_unsafe(
    rsps: responses.RequestsMock,
) -> None:
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    rsps.post(f"{API}/projects/12/trigger/pipeline", body=refused)
    rsps.post(f"{API}/projects/12/trigger/pipeline", status=201, json={"id": 5, "web_url": "w"})
    assert bounded(retry_posts=False).run_trigger(12, "main", "glptt-x", {}).id == 5
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_4xx_is_never_retried(rsps: responses.RequestsMock, status: int) -> None:
    rsps.get(f"{API}/groups/ml-team", status=status, json={"message": "no"})
    from mlops_common.errors import GitLabError

    with pytest.raises(GitLabError):
        bounded(max_retries=5).group("ml-team")
    assert len(rsps.calls) == 1
