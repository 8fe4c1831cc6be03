"""The runtime both handlers share: AWS client settings, deadlines from the Lambda context, the GitLab
adapter as the protocol, and re-reading a token GitLab rejected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlops_common import runtime, secrets
from mlops_common.errors import GitLabAuthError, GitLabForbidden, GitLabNotFound, GitLabUnavailable
from mlops_common.gitlab_api import GitLabApi
from mlops_common.gitlab_client import GitLab, GitLabSettings

from tests.unit.lambdas.fake_gitlab import FakeGitLab
from tests.unit.lambdas.helpers import FakeContext, FakeSecrets

SETTINGS = GitLabSettings(url="https://gitlab.example.com:8443", token_source="gitlab-token")
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gitlab-mlops-platform/gitlab-token-AbCdEf"
CRHELPER_TIMER = 0.5  # seconds before the Lambda's end at which crhelper answers "Execution timed out"


def test_the_adapter_and_the_fake_both_satisfy_the_protocol() -> None:
    adapter: GitLabApi = GitLab(SETTINGS, None)  # mypy proves the adapter has every member
    fake: GitLabApi = FakeGitLab("https://gitlab.example.com:8443")
    assert (adapter.url, adapter.host) == (fake.url, fake.host) == (SETTINGS.url, "gitlab.example.com:8443")


def test_the_factory_builds_the_adapter_with_the_settings_deadline() -> None:
    gl = runtime.gitlab(GitLabSettings(url="https://g", token_source="t", deadline=123.0), "glpat-x")
    assert isinstance(gl, GitLab) and gl.deadline == 123.0


@pytest.mark.parametrize(("remaining", "kept"), [(5, 2.0), (10, 2.0), (60, 6.0), (900, 15.0)])
def test_a_custom_resource_keeps_a_tenth_of_its_time_within_2_and_15_seconds(
    remaining: float, kept: float
) -> None:
    assert runtime.ANSWER_RESERVE.seconds(remaining) == pytest.approx(kept)
    assert runtime.deadline(FakeContext(remaining), runtime.ANSWER_RESERVE, now=lambda: 100.0) == (
        pytest.approx(100.0 + remaining - kept)
    )


def test_gitlab_calls_stop_before_crhelpers_timer_answers() -> None:
    # The product's own FAILED reason must reach CloudFormation, not crhelper's "Execution timed out".
    assert runtime.ANSWER_RESERVE.seconds(0.0) > CRHELPER_TIMER


@pytest.mark.parametrize("remaining", [5, 30, 900])
def test_an_event_handler_keeps_two_seconds_to_log_and_raise(remaining: float) -> None:
    assert runtime.deadline(FakeContext(remaining), runtime.RAISE_RESERVE, now=lambda: 0.0) == (
        pytest.approx(remaining - 2.0)
    )


def test_without_a_lambda_context_there_is_no_deadline() -> None:
    assert runtime.deadline(None, runtime.RAISE_RESERVE) is None


def test_aws_clients_get_short_timeouts_and_standard_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, Any]] = []

    def client(service: str, config: Any) -> str:
        made.append((service, config))
        return service

    monkeypatch.setattr("boto3.client", client)
    assert runtime.aws_client("s3") == "s3"
    assert made == [("s3", runtime.AWS_CONFIG)]
    assert (runtime.AWS_CONFIG.connect_timeout, runtime.AWS_CONFIG.read_timeout) == (5, 20)
    retries = runtime.AWS_CONFIG.retries
    assert retries is not None and retries["mode"] == "standard"
    # botocore rewrites max_attempts (retries) into total_max_attempts (with the first try) once a client
    # has been made with this Config, so the value depends on what ran before: check the meaning.
    assert retries.get("total_max_attempts", retries.get("max_attempts", 0) + 1) == 4


def read_twice_around(exc: BaseException, secret_id: str | None) -> tuple[bool, int]:
    """Read the secret, apply the rule to `exc`, read again: (forgotten?, Secrets Manager reads)."""
    client = FakeSecrets({SECRET: json.dumps({"token": "glpat-x"})})
    secrets.read_secret_string(client, SECRET, "test")
    forgotten = runtime.forget_rejected_token(exc, secret_id)
    secrets.read_secret_string(client, SECRET, "test")
    return forgotten, client.calls


@pytest.mark.parametrize("exc", [GitLabAuthError("401"), GitLabNotFound("404")])
def test_a_401_or_404_from_gitlab_makes_the_token_be_read_again(exc: BaseException) -> None:
    assert read_twice_around(exc, SECRET) == (True, 2)


@pytest.mark.parametrize("exc", [GitLabForbidden("403"), GitLabUnavailable("502"), ValueError("a bug")])
def test_other_failures_keep_the_cached_token(exc: BaseException) -> None:
    assert read_twice_around(exc, SECRET) == (False, 1)


def test_no_secret_id_means_nothing_to_forget() -> None:
    assert read_twice_around(GitLabAuthError("401"), None) == (False, 1)
