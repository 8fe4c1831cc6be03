"""Which jobs run when: the rules evaluated by gitlab-ci-local (a real GitLab CI implementation), plus
checks on the YAML for what gitlab-ci-local reports differently from GitLab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

SEED = Path(__file__).resolve().parents[2]
CI_FILE = SEED / ".gitlab-ci.yml"
DEPLOY_JOBS = ("build", "staging")
PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/abalone-p-abc123xyz/3"
GCL_VERSION = "4.73.0"


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return dict(yaml.safe_load(CI_FILE.read_text()))


def find_gitlab_ci_local() -> str | None:
    """$GITLAB_CI_LOCAL, then PATH, then a node_modules/.bin above this repository."""
    if os.environ.get("GITLAB_CI_LOCAL"):
        return os.environ["GITLAB_CI_LOCAL"]
    on_path = shutil.which("gitlab-ci-local")
    if on_path:
        return on_path
    for parent in SEED.parents:
        candidate = parent / "node_modules" / ".bin" / "gitlab-ci-local"
        if candidate.exists():
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def gitlab_ci_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Runs `gitlab-ci-local --list-json` on a git repository holding this .gitlab-ci.yml."""
    binary = find_gitlab_ci_local()
    if binary is None:
        message = f"gitlab-ci-local not found: `npm i gitlab-ci-local@{GCL_VERSION}` or set GITLAB_CI_LOCAL"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    repo = tmp_path_factory.mktemp("seed-repo")
    shutil.copy(CI_FILE, repo / ".gitlab-ci.yml")
    git = ["git", "-c", "user.name=seed", "-c", "user.email=seed@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Initial commit"], cwd=repo, check=True)

    def jobs(**variables: str) -> dict[str, dict[str, Any]]:
        args = [binary, "--list-json", "--ignore-predefined-vars", ",".join(variables)]
        for key, value in variables.items():
            args += ["--variable", f"{key}={value}"]
        done = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr + done.stdout
        listed = json.loads(done.stdout[done.stdout.index("[") :])
        return {job["name"]: job for job in listed}

    yield jobs


def running(jobs: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: job["when"] for name, job in jobs.items() if job["when"] != "never"}


pytestmark_gcl = pytest.mark.gitlab_ci_local  # CI images without Node deselect these


@pytestmark_gcl
@pytest.mark.parametrize("source", ["api", "trigger", "pipeline", "web"])
def test_pipelines_started_on_purpose_deploy_with_a_manual_production_gate(gitlab_ci_local: Any, source: str):
    jobs = gitlab_ci_local(
        CI_PIPELINE_SOURCE=source, MODEL_PACKAGE_ARN=PACKAGE_ARN, MODEL_APPROVAL_STATUS="Approved"
    )
    assert running(jobs) == {
        "build": "on_success",
        "staging": "on_success",
        "deploy-prod": "manual",
    }
    assert jobs["deploy-prod"]["allow_failure"] is False


@pytestmark_gcl
def test_a_plain_push_to_the_default_branch_does_not_deploy(gitlab_ci_local: Any):
    jobs = gitlab_ci_local(CI_PIPELINE_SOURCE="push", CI_COMMIT_MESSAGE="Initial commit")
    assert running(jobs) == {"check": "on_success"}


@pytestmark_gcl
def test_a_merge_request_only_runs_the_repository_tests(gitlab_ci_local: Any):
    jobs = gitlab_ci_local(CI_PIPELINE_SOURCE="merge_request_event")
    assert running(jobs) == {"check": "on_success"}


@pytestmark_gcl
@pytest.mark.parametrize(
    "asking",
    [
        {"DEPLOY_ON_PUSH": "true", "CI_COMMIT_MESSAGE": "Tune autoscaling"},
        {"CI_COMMIT_MESSAGE": "Bigger instances [deploy]"},
    ],
)
def test_a_push_to_the_default_branch_deploys_when_asked(gitlab_ci_local: Any, asking: dict[str, str]):
    jobs = gitlab_ci_local(CI_PIPELINE_SOURCE="push", **asking)
    assert running(jobs) == {
        "check": "on_success",
        **dict.fromkeys(DEPLOY_JOBS, "on_success"),
        "deploy-prod": "manual",
    }


@pytestmark_gcl
def test_a_push_to_another_branch_never_deploys(gitlab_ci_local: Any):
    jobs = gitlab_ci_local(
        CI_PIPELINE_SOURCE="push",
        CI_COMMIT_BRANCH="feature",
        DEPLOY_ON_PUSH="true",
        CI_COMMIT_MESSAGE="x [deploy]",
    )
    assert running(jobs) == {"check": "on_success"}


def test_production_is_manual_inside_rules_and_blocks_the_pipeline(ci: dict[str, Any]):
    # gitlab-ci-local reports job-level `when: manual` as blocking too; GitLab does not. Check the YAML.
    prod = ci["deploy-prod"]
    assert "when" not in prod, "when: manual at job level is non-blocking in GitLab; put it in rules"
    assert prod["allow_failure"] is False
    active_rules = [rule for rule in prod["rules"] if rule.get("when") != "never"]
    assert active_rules
    for rule in active_rules:
        assert rule["when"] == "manual"
        assert rule["allow_failure"] is False
    # Production only after the staging job (deploy and test) passed.
    assert "staging" in prod["needs"]


def test_deploy_jobs_use_environments_and_resource_groups(ci: dict[str, Any]):
    assert ci["stages"] == ["build", "staging", "deploy-prod"]
    url = "$ENDPOINT_CONSOLE_URL"  # from the job's dotenv report (steps/deploy.py writes it)
    for job, name in (("staging", "staging"), ("deploy-prod", "production")):
        assert ci[job]["environment"] == {"name": name, "deployment_tier": name, "url": url}
    for stage, job in (("staging", "staging"), ("prod", "deploy-prod")):
        assert ci[job]["artifacts"]["reports"]["dotenv"] == f"build/{stage}-deploy.env"
    assert ci["deploy-prod"]["resource_group"] == "production"
    assert ci["staging"]["artifacts"]["reports"]["junit"] == "build/staging-test-report.xml"
    assert ci["staging"]["artifacts"]["when"] == "always"  # the report of a failed test is kept


def test_one_staging_job_holds_the_lock_from_deploy_to_the_end_of_the_test(ci: dict[str, Any]):
    # resource_group locks one job at a time: deploying and testing in two jobs would let another pipeline
    # redeploy staging in between, and this pipeline would then test the other model.
    holders = {
        name for name, job in ci.items() if isinstance(job, dict) and job.get("resource_group") == "staging"
    }
    assert holders == {"staging"}
    script = ci["staging"]["script"]
    assert [line.split()[2] for line in script] == ["steps.deploy", "steps.staging_test"]
    assert "--stage staging" in script[0]


def test_aws_jobs_request_an_oidc_token_and_use_a_pinned_image(ci: dict[str, Any]):
    assert ci[".aws"]["id_tokens"] == {"AWS_ID_TOKEN": {"aud": "sts.amazonaws.com"}}
    image = ci[".python"]["image"]
    assert ":" in image and not image.endswith((":latest", ":3", ":3.11")), image
    for job in (*DEPLOY_JOBS, "deploy-prod"):
        assert ci[job]["extends"] == ".aws"


def auth_snippet(ci: dict[str, Any]) -> str:
    return next(line for line in ci[".aws"]["before_script"] if "AWS_AUTH_MODE" in line)


def run_auth(ci: dict[str, Any], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = (
        auth_snippet(ci)
        + '\necho "token_file=${AWS_WEB_IDENTITY_TOKEN_FILE:-}"; echo "key=${AWS_ACCESS_KEY_ID:-}"'
        + '; echo "role=${AWS_ROLE_ARN:-}"'
    )
    # The job's own variables (AWS_CI_DUTY) first, as GitLab sets them; the CI/CD variables override.
    base = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), **ci[".aws"]["variables"]}
    return subprocess.run(
        ["bash", "-c", script], env={**base, **env}, capture_output=True, text=True, check=False
    )


def test_oidc_mode_writes_the_id_token_for_boto3(ci: dict[str, Any], tmp_path: Path):
    done = run_auth(
        ci,
        {
            "AWS_AUTH_MODE": "oidc",
            "AWS_ROLE_ARN": "arn:aws:iam::1:role/ci",
            "AWS_ID_TOKEN": "jwt-value",
            "AWS_ACCESS_KEY_ID": "AKIA",
        },
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    token_file = done.stdout.split("token_file=")[1].splitlines()[0]
    assert Path(token_file).read_text() == "jwt-value"
    assert "key=\n" in done.stdout  # static keys do not shadow the role


def test_auth_modes_fail_clearly_without_their_credentials(ci: dict[str, Any], tmp_path: Path):
    oidc = run_auth(ci, {"AWS_AUTH_MODE": "oidc"}, tmp_path)
    assert oidc.returncode == 1 and "needs the CI/CD variable AWS_ROLE_ARN" in oidc.stderr
    keys = run_auth(ci, {"AWS_AUTH_MODE": "access-keys"}, tmp_path)
    assert keys.returncode == 1 and "AWS_ACCESS_KEY_ID" in keys.stderr
    ok = run_auth(
        ci, {"AWS_AUTH_MODE": "access-keys", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, tmp_path
    )
    assert ok.returncode == 0 and "key=a" in ok.stdout
    bad = run_auth(ci, {"AWS_AUTH_MODE": "password"}, tmp_path)
    assert bad.returncode == 1 and "must be oidc or access-keys" in bad.stderr


def test_only_the_production_job_uses_the_production_credentials(ci: dict[str, Any], tmp_path: Path):
    duties = {
        name: job.get("variables", {}).get("AWS_CI_DUTY") for name, job in ci.items() if isinstance(job, dict)
    }
    assert ci[".aws"]["variables"]["AWS_CI_DUTY"] == "staging"
    assert [name for name, duty in duties.items() if duty == "production"] == ["deploy-prod"]
    staging = {
        "AWS_ROLE_ARN": "arn:aws:iam::1:role/ci-staging",
        "AWS_PROD_ROLE_ARN": "arn:aws:iam::1:role/ci-prod",
        "AWS_ID_TOKEN": "jwt",
    }
    done = run_auth(ci, staging, tmp_path)
    assert done.returncode == 0 and "role=arn:aws:iam::1:role/ci-staging" in done.stdout
    prod = run_auth(ci, {**staging, "AWS_CI_DUTY": "production"}, tmp_path)
    assert prod.returncode == 0 and "role=arn:aws:iam::1:role/ci-prod" in prod.stdout
    # Without the production role (an unprotected ref never gets it) the job stops; it never falls back.
    unprotected = run_auth(ci, {**staging, "AWS_CI_DUTY": "production", "AWS_PROD_ROLE_ARN": ""}, tmp_path)
    assert unprotected.returncode == 1 and "production role" in unprotected.stderr
    keys = {
        "AWS_AUTH_MODE": "access-keys",
        "AWS_ACCESS_KEY_ID": "staging-id",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_PROD_ACCESS_KEY_ID": "prod-id",
        "AWS_PROD_SECRET_ACCESS_KEY": "p",
        "AWS_CI_DUTY": "production",
    }
    assert "key=prod-id" in run_auth(ci, keys, tmp_path).stdout
    unknown = run_auth(ci, {**staging, "AWS_CI_DUTY": "admin"}, tmp_path)
    assert unknown.returncode == 1 and "must be staging or production" in unknown.stderr
