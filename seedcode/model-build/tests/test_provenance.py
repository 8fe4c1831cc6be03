"""GitLab CI's predefined variables -> the provenance parameters a registered version records."""

from __future__ import annotations

import pytest

from pipelines.abalone import pipeline as abalone
from pipelines.provenance import Provenance, merge_request_url, metadata_value

SERVER = "https://gitlab.example.com"
PROJECT = f"{SERVER}/ml-team/churn-model-build"


def no_git(args: list[str]) -> str:
    raise AssertionError(f"git {args} must not run in CI")


def test_branch_pipeline_after_a_merge_names_the_merged_request_from_the_merge_commit():
    env = {
        "CI": "true", "CI_COMMIT_SHA": "a" * 40, "CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main",
        "CI_PROJECT_URL": PROJECT, "CI_PIPELINE_URL": f"{PROJECT}/-/pipelines/9", "CI_SERVER_URL": SERVER,
        "CI_COMMIT_MESSAGE": (
            "Merge branch 'tune' into 'main'\n\nTune\n\nSee merge request ml-team/churn-model-build!12"
        ),
    }
    found = Provenance.from_ci(env, no_git)
    assert found == Provenance("a" * 40, "main", PROJECT, f"{PROJECT}/-/pipelines/9",
                               f"{PROJECT}/-/merge_requests/12")
    assert found.parameters() == {
        abalone.PARAM_COMMIT: "a" * 40, abalone.PARAM_BRANCH: "main", abalone.PARAM_REPOSITORY: PROJECT,
        abalone.PARAM_PIPELINE_URL: f"{PROJECT}/-/pipelines/9",
        abalone.PARAM_MERGE_REQUEST_URL: f"{PROJECT}/-/merge_requests/12",
    }


def test_merge_request_pipeline_uses_the_source_branch_and_the_request_itself():
    env = {
        "CI": "true", "CI_COMMIT_SHA": "b" * 40, "CI_COMMIT_REF_NAME": "tune",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "tune", "CI_MERGE_REQUEST_IID": "4",
        "CI_MERGE_REQUEST_PROJECT_URL": PROJECT, "CI_PROJECT_URL": PROJECT,
    }
    found = Provenance.from_ci(env, no_git)
    assert found.branch == "tune" and found.merge_request_url == f"{PROJECT}/-/merge_requests/4"


def test_a_plain_push_has_no_merge_request_and_unknowns_become_none():
    env = {"CI": "true", "CI_COMMIT_SHA": "c" * 40, "CI_COMMIT_BRANCH": "main", "CI_COMMIT_MESSAGE": "Fix typo"}
    found = Provenance.from_ci(env, no_git)
    assert merge_request_url(env) == ""
    params = found.parameters()
    assert params[abalone.PARAM_MERGE_REQUEST_URL] == params[abalone.PARAM_PIPELINE_URL] == abalone.UNKNOWN


def test_outside_ci_the_local_checkout_gives_commit_and_branch():
    answers = {("rev-parse", "HEAD"): "d" * 40, ("rev-parse", "--abbrev-ref", "HEAD"): "experiment"}
    found = Provenance.from_ci({}, lambda args: answers[tuple(args)])
    assert (found.commit, found.branch) == ("d" * 40, "experiment")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("feature/tune#2", "feature/tune_2"), ("", "none"), ("   ", "none"), ("x" * 300, "x" * 256),
     ("https://host:8443/a/b/-/merge_requests/1", "https://host:8443/a/b/-/merge_requests/1")],
)
def test_metadata_values_keep_to_what_sagemaker_accepts(raw, clean):
    assert metadata_value(raw) == clean
