"""Parsing gitlab-ci-local's output into GitLab's job model (no subprocess here)."""

from __future__ import annotations

from scripts.gitlab_standin.runner import _job_spec, _starting_job


def test_manual_job_outside_rules_is_non_blocking_like_gitlab() -> None:
    plain = _job_spec({"name": "prod", "stage": "deploy", "when": "manual", "allow_failure": False})
    ruled = _job_spec({"name": "prod", "stage": "deploy", "when": "manual", "allow_failure": False,
                       "rules": [{"when": "manual"}]})
    assert plain.allow_failure is True
    assert ruled.allow_failure is False
    assert _job_spec({"name": "x"}).stage == "test"


def test_starting_line_is_matched_to_the_longest_job_name() -> None:
    names = sorted(["deploy", "deploy staging", "test"], key=len, reverse=True)
    assert _starting_job("deploy staging starting shell (deploy)", names) == "deploy staging"
    assert _starting_job("deploy starting shell (deploy)", names) == "deploy"
    assert _starting_job("deploy $ echo starting now", names) is None
