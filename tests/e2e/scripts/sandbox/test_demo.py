"""The whole demo once, on its own sandbox (moto, GitLab stand-in, gitlab-ci-local), and facts at each step.

One module-scoped run: the default lifecycle with RepositoryDeletionPolicy=archive, plus an extra stage
before the project is deleted where an ML engineer works as in GitLab: clones the build repository with
plain git (the line `demo status` prints), points the build at other data, pushes a branch with a changed
hyperparameter, opens a merge request, reads the model note its pipeline posts, and merges; the merged
build registers a second version, which is rejected (nothing deploys), approved after all (it replaces the
first in staging only), and shows up in `demo status` with its commit and environments. A biased copy of it
(one ring too high) fails its staging test; approved, it makes the second version's waiting production job
stale, which then refuses to run. Then a second
project (CI access-key mode, policy delete) is created and deleted. Tests assert what each step left behind.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from mlops_common import contract

from scripts.sandbox import demo, lifecycle, steps
from scripts.sandbox.lab import BUILD_REPO, DEPLOY_REPO, Lab, Project
from scripts.sandbox.report import Report
from scripts.sandbox.services import new_project_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NAME = "abalone-e2e"
SUMMARY = re.compile(r"^demo: OK stages=(\d+)/(\d+) seconds=(\d+\.\d) test_mse=(\d+\.\d\d)$")
NOTE_MARKER = "<!-- sagemaker-model-review -->"
BRANCH = "tune-depth"
ENGINEER = {
    "GIT_AUTHOR_NAME": "Ada ML",
    "GIT_AUTHOR_EMAIL": "ada@example.invalid",
    "GIT_COMMITTER_NAME": "Ada ML",
    "GIT_COMMITTER_EMAIL": "ada@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


@dataclass
class Outcome:
    code: int
    lines: list[str]
    run: lifecycle.Run
    extra: dict[str, Any] = field(default_factory=dict)


def _git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **ENGINEER, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout + done.stderr


def _status(lab: Lab) -> list[str]:
    lines: list[str] = []
    demo.status(lab, lines.append)
    return lines


def _work_in_a_merge_request(run: lifecycle.Run, lab: Lab, found: dict[str, Any], workdir: Path) -> None:
    """Clone, branch, change a hyperparameter, push, open a merge request, read its note, merge."""
    project = run.project
    assert project is not None
    rows = lab.read_s3("s3://sagemaker-servicecatalog-seedcode-us-east-1/dataset/abalone-dataset.csv")
    subset = b"".join(rows.splitlines(keepends=True)[::2])  # every other abalone: a different model
    lab.s3.put_object(Bucket=project.artifact_bucket, Key="data/abalone-half.csv", Body=subset)
    repo = lab.gitlab().projects.get(project.build_project_id)
    repo.variables.create(
        {"key": "PIPELINE_INPUT_DATA", "value": f"s3://{project.artifact_bucket}/data/abalone-half.csv"}
    )
    found["status_before"] = status_before = _status(lab)
    [clone_line] = [
        line.split("clone: ", 1)[1]
        for line in status_before
        if line.strip().startswith("clone:") and project.build_path in line
    ]
    [export] = [line.strip() for line in status_before if line.strip().startswith("export GIT_SSL_CAINFO=")]
    shell = dict([export.removeprefix("export ").split("=", 1)])  # as after the `export` status prints
    clone = workdir / "model-build"
    # The copy-paste line as it is, in a shell whose environment sets GIT_SSL_CAINFO (as this machine's does)
    system_ca = {"GIT_SSL_CAINFO": "/etc/ssl/certs/ca-certificates.crt"}
    pasted = subprocess.run(
        ["bash", "-c", f"{clone_line} {shlex.quote(str(clone))}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **ENGINEER, **system_ca},
    )
    assert pasted.returncode == 0, pasted.stderr
    hyperparameters = clone / "pipelines" / "abalone" / "hyperparameters.py"
    text = hyperparameters.read_text()
    assert '"max_depth": "4"' in text
    hyperparameters.write_text(text.replace('"max_depth": "4"', '"max_depth": "3"'))
    _git("checkout", "-q", "-b", BRANCH, cwd=clone)
    _git("commit", "-qam", "Shallower trees (max_depth 3)", cwd=clone)
    found["push_output"] = _git("push", "-u", "origin", BRANCH, cwd=clone, env=shell)
    found["branch_sha"] = _git("rev-parse", "HEAD", cwd=clone).strip()

    before = {p["ModelPackageArn"] for p in lab.packages(project)}
    newest = max(p["id"] for p in lab.pipelines(project.build_project_id))
    mr = repo.mergerequests.create(
        {
            "source_branch": BRANCH,
            "target_branch": repo.default_branch,
            "title": "Shallower trees",
            "description": "max_depth 4 -> 3",
        }
    )
    found["mr_pipeline"] = review = lab.wait_for_pipeline(
        project.build_project_id, BUILD_REPO, newer_than=newest, source="merge_request_event", timeout=900
    )
    found["registered_by_mr"] = {p["ModelPackageArn"] for p in lab.packages(project)} - before
    notes = [n for n in repo.mergerequests.get(mr.iid).notes.list(get_all=True) if NOTE_MARKER in n.body]
    found["mr_notes"] = [(n.body, n.author["username"]) for n in notes]
    evaluation = lab.artifact(review["id"], "run-pipeline", "evaluation.json")
    found["mr_evaluation"] = json.loads(evaluation.read_text()) if evaluation else None
    metrics = lab.artifact(review["id"], "run-pipeline", "metrics.txt")
    found["mr_metrics_report"] = metrics.read_text() if metrics else ""
    found["mr_pipeline_page"] = requests.get(review["web_url"], verify=lab.state.ca_file, timeout=30)
    found["mr_page"] = requests.get(mr.web_url, verify=lab.state.ca_file, timeout=30).text
    found["mr_job_log_file"] = lab.job_log_file(project.build_project_id, review["id"], "run-pipeline")

    mr.merge()
    found["merged_mr"] = repo.mergerequests.get(mr.iid).attributes
    found["second_build"] = steps.step_build(lab, run.report, project, newer_than=review["id"], source="push")


def _extra(run: lifecycle.Run, lab: Lab, found: dict[str, Any], workdir: Path) -> None:
    project = run.project
    assert project is not None
    assert run.build is not None and run.deploy is not None
    junit = run.deploy.junit
    found["junit"] = junit.read_text() if junit else ""
    first_staging = lab.endpoint(project, "staging")
    assert first_staging is not None, "no staging endpoint after the first approval"
    rows = lab.test_rows(run.build.package, 20)
    found["rows"] = rows
    found["first_staging"] = first_staging
    found["first_predictions"] = lab.predict(first_staging["name"], [r[1:] for r in rows])
    found["staging_refusal"] = lab.refusal(first_staging["name"], rows[0][1:-1])

    _work_in_a_merge_request(run, lab, found, workdir)
    second = found["second_build"].package_arn
    found["pipelines_before_reject"] = [p["id"] for p in lab.pipelines(project.deploy_project_id)]
    steps.step_reject(lab, run.report, project, second)
    time.sleep(1)
    found["pipelines_after_reject"] = [p["id"] for p in lab.pipelines(project.deploy_project_id)]
    found["status_after_reject"] = lab.sm.describe_model_package(ModelPackageName=second)[
        "ModelApprovalStatus"
    ]

    found["second_deploy"] = steps.step_approve(lab, run.report, project, second)
    found["second_staging"] = lab.endpoint(project, "staging")
    found["second_predictions"] = lab.predict(found["second_staging"]["name"], [r[1:] for r in rows])
    found["prod_after_second"] = lab.endpoint(project, "prod")
    found["status_after"] = _status(lab)
    found["deploy_environments"] = lab.environments(project.deploy_project_id)
    found["all_rows"] = lab.test_rows(run.build.package, 10**6)

    # A model one ring too high, carrying the second version's evaluation: its staging test must fail. Once
    # approved it is the newest approval, so the second version's pipeline, still waiting at its
    # production gate, is stale: playing its deploy-prod must refuse and leave production alone.
    biased = lab.register_biased(project, lab.sm.describe_model_package(ModelPackageName=second), 1.0)
    found["biased"] = steps.step_staging_fails(lab, run.report, project, biased)
    junit_file = found["biased"].junit
    found["biased_junit"] = junit_file.read_text() if junit_file else ""  # the sandbox is pruned at the end
    found["stale_prod"] = steps.step_stale_prod_refused(
        lab, run.report, project, found["second_deploy"].pipeline_id
    )
    found["prod_after_stale"] = lab.endpoint(project, "prod")

    other = lab.create_project("abalone-other", new_project_id(), "delete", auth_mode="access-keys")
    found["other_repos"] = lab.repositories(other)
    _, found["other_deletion"] = lab.delete_project(other)
    found["other_project"] = other


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp("demo") / ".sandbox"
    lines: list[str] = []
    run = lifecycle.Run(Report(lines.append))
    found: dict[str, Any] = {}
    workdir = tmp_path_factory.mktemp("engineer")
    code = lifecycle.full_run(
        root,
        NAME,
        "archive",
        "oidc",
        keep=False,
        run=run,
        extra=lambda r, lab: _extra(r, lab, found, workdir),
    )
    Path(tmp_path_factory.getbasetemp() / "demo-output.txt").write_text("\n".join(lines))
    yield Outcome(code, lines, run, found)


def _built(outcome: Outcome) -> steps.Build:
    assert outcome.run.build is not None, outcome.lines[-1]
    return outcome.run.build


def _staged(outcome: Outcome) -> steps.Staged:
    assert outcome.run.deploy is not None, outcome.lines[-1]
    return outcome.run.deploy


def _prod(outcome: Outcome) -> steps.Production:
    assert outcome.run.prod is not None, outcome.lines[-1]
    return outcome.run.prod


def _prediction(outcome: Outcome) -> steps.Prediction:
    assert outcome.run.prediction is not None, outcome.lines[-1]
    return outcome.run.prediction


def _project(outcome: Outcome) -> Project:
    assert outcome.run.project is not None, outcome.lines[-1]
    return outcome.run.project


def test_the_demo_succeeds_and_ends_with_the_summary_line(outcome: Outcome) -> None:
    assert outcome.code == 0, "\n".join(outcome.lines[-40:])
    match = SUMMARY.match(outcome.lines[-1].splitlines()[-1])
    assert match, outcome.lines[-1]
    passed, total, seconds, mse = match.groups()
    assert passed == total == str(len(lifecycle.FULL_STAGES) + 1)
    assert float(seconds) > 10
    metrics = _built(outcome).metrics
    assert mse == f"{metrics['mse']['value']:.2f}"
    summary = outcome.lines[-1]
    for stage in lifecycle.FULL_STAGES:
        assert re.search(rf"^\s+ok\s+\d+\.\d+s\s+{re.escape(stage)}", summary, re.M), stage
    assert "staging endpoint: " in summary and "production endpoint: " in summary
    assert "total wall time:" in summary


def test_seeded_repositories_and_ci_variables(outcome: Outcome) -> None:
    project = _project(outcome)
    repos = outcome.run.repos
    assert repos[BUILD_REPO]["path"] == f"ml-team/{NAME}-model-build"
    assert repos[DEPLOY_REPO]["path"] == f"ml-team/{NAME}-model-deploy"
    assert {".gitlab-ci.yml", "pipelines/run_pipeline.py", "pipelines/abalone/pipeline.py"} <= set(
        repos[BUILD_REPO]["files"]
    )
    assert {".gitlab-ci.yml", "steps/deploy.py", "endpoint-config-template.yml"} <= set(
        repos[DEPLOY_REPO]["files"]
    )
    assert repos[BUILD_REPO]["clone_url"].startswith("https://127.0.0.1:")
    for label in (BUILD_REPO, DEPLOY_REPO):
        variables = {k: v["value"] for k, v in repos[label]["variables"].items()}
        assert variables[contract.VAR_PROJECT_NAME] == NAME
        assert variables["SAGEMAKER_PROJECT_ID"] == project.id
        assert variables["MODEL_PACKAGE_GROUP_NAME"] == project.package_group
        assert variables["ARTIFACT_BUCKET"] == project.artifact_bucket
        assert variables["AWS_AUTH_MODE"] == "oidc"
        assert "AWS_SECRET_ACCESS_KEY" not in variables
    # One CI role per duty; only the deploy repository gets the production role.
    build_vars = {k: v["value"] for k, v in repos[BUILD_REPO]["variables"].items()}
    deploy_vars = {k: v["value"] for k, v in repos[DEPLOY_REPO]["variables"].items()}
    assert build_vars[contract.VAR_CI_ROLE].endswith(f"role/gitlab-mlops/gitlab-mlops-{project.id}-ci-build")
    assert contract.VAR_CI_PROD_ROLE not in build_vars
    assert deploy_vars[contract.VAR_CI_ROLE].endswith(
        f"role/gitlab-mlops/gitlab-mlops-{project.id}-ci-staging"
    )
    assert deploy_vars[contract.VAR_CI_PROD_ROLE].endswith(
        f"role/gitlab-mlops/gitlab-mlops-{project.id}-ci-prod"
    )


def test_the_build_registers_a_pending_package_with_real_metrics(outcome: Outcome) -> None:
    project = _project(outcome)
    build = _built(outcome)
    assert build.pipeline["status"] == "success"
    assert build.pipeline["source"] == "push"
    assert build.pipeline["jobs"]["run-pipeline"]["status"] == "success"
    package = build.package
    assert package["ModelApprovalStatus"] == contract.PENDING
    assert package["ModelPackageGroupName"] == project.package_group
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert statistics.startswith(f"s3://{project.artifact_bucket}/") and statistics.endswith(
        "/evaluation.json"
    )
    mse = build.metrics["mse"]["value"]
    assert 1.0 < mse < 6.0  # the pipeline's own quality gate is 6.0
    assert abs(build.metrics["rmse"]["value"] ** 2 - mse) < 1e-6


def test_approval_starts_the_deploy_pipeline_with_the_package(outcome: Outcome) -> None:
    deploy = _staged(outcome)
    arn = _built(outcome).package_arn
    assert deploy.pipeline["source"] == "trigger"
    assert deploy.variables[contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] == arn
    assert deploy.variables[contract.PIPELINE_VAR_APPROVAL_STATUS] == contract.APPROVED
    assert {n: j["status"] for n, j in deploy.pipeline["jobs"].items()} == {
        "build": "success",
        "staging": "success",  # deploy and test in one job: one hold of the staging lock
        "deploy-prod": "manual",
    }


def test_staging_test_passed_on_real_predictions(outcome: Outcome) -> None:
    report = outcome.extra["junit"]
    suites = re.search(r"<testsuite [^>]*tests=\"(\d+)\"[^>]*failures=\"(\d+)\"", report)
    assert suites, report[:500]
    assert int(suites.group(1)) >= 1 and suites.group(2) == "0"
    assert "<failure" not in report
    assert 'name="malformed-record-refused"' in report  # the staging test sent a mis-shaped record too
    assert 'name="bias-within-bound"' in report
    # every held-out row was sent, and the report says what was measured against which bound and why
    rows = len(outcome.extra["all_rows"])
    assert f"on {rows} of {rows} held-out rows" in report
    assert 'name="bound_computed_as" value="evaluation MSE ' in report


def test_endpoints_in_service_and_production_predicts_rings(outcome: Outcome) -> None:
    arn = _built(outcome).package_arn
    first_staging = outcome.extra["first_staging"]
    prod = _prod(outcome).prod
    assert first_staging["status"] == prod["status"] == "InService"
    assert first_staging["model_package"] == prod["model_package"] == arn
    assert _prod(outcome).pipeline["jobs"]["deploy-prod"]["status"] == "success"
    prediction = _prediction(outcome)
    assert len(prediction.predictions) == len(prediction.truth) == steps.PREDICTION_ROWS
    assert all(1.0 <= p <= 30.0 for p in prediction.predictions)
    assert prediction.mae < 3.0
    truth = [float(r[0]) for r in outcome.extra["rows"]]
    assert truth == prediction.truth


def test_staging_and_production_take_raw_records_and_refuse_a_mis_shaped_one(outcome: Outcome) -> None:
    prediction = _prediction(outcome)
    records = prediction.records
    assert [len(r) for r in records] == [8] * steps.PREDICTION_ROWS  # sex,length,...,shell_weight
    assert {r[0] for r in records} <= {"F", "I", "M"}
    # the same model in staging and production: the same answers to the same raw records
    assert outcome.extra["first_predictions"] == prediction.predictions
    for refused in (prediction.refused, outcome.extra["staging_refusal"]):
        assert refused["code"] == "ModelError"
        assert refused["status"] == 400
        assert "expected 8 values" in refused["message"]


def test_rejecting_a_model_deploys_nothing(outcome: Outcome) -> None:
    assert outcome.extra["status_after_reject"] == contract.REJECTED
    assert outcome.extra["pipelines_after_reject"] == outcome.extra["pipelines_before_reject"]


def test_a_second_approved_model_replaces_the_first_in_staging_only(outcome: Outcome) -> None:
    first = _built(outcome).package_arn
    second_build = outcome.extra["second_build"]
    second = second_build.package_arn
    assert second != first and second_build.pipeline["source"] == "push"  # the merge's push
    deploy = outcome.extra["second_deploy"]
    assert deploy.variables[contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] == second
    assert deploy.pipeline_id > _staged(outcome).pipeline_id
    before, after = outcome.extra["first_staging"], outcome.extra["second_staging"]
    assert after["name"] == before["name"]
    # moto updates the endpoint config in place (AWS would replace it): the model behind it is what changes
    assert after["model"] != before["model"]
    assert after["model_data"] != before["model_data"] or after["model_package"] != before["model_package"]
    assert after["model_package"] == second
    assert outcome.extra["first_predictions"] != outcome.extra["second_predictions"]
    assert outcome.extra["prod_after_second"]["model_package"] == first


def test_a_biased_model_fails_its_staging_test_and_never_waits_for_production(outcome: Outcome) -> None:
    biased = outcome.extra["biased"]
    jobs = {name: job["status"] for name, job in biased.pipeline["jobs"].items()}
    assert jobs["build"] == "success" and jobs["staging"] == "failed"
    assert biased.prod_status != "success"
    if biased.prod_refusal:  # the stand-in left deploy-prod playable (GitLab skips it): the gate refused
        assert "no passed staging test in this pipeline" in biased.prod_refusal
    assert any(line.startswith("FAIL bias-within-bound: |mean error|") for line in biased.failed_checks)
    assert "predictions above targets" in biased.log
    assert 'name="bias-within-bound"' in outcome.extra["biased_junit"]
    assert "<failure" in outcome.extra["biased_junit"]


def test_an_older_pipelines_production_job_refuses_after_a_newer_approval(outcome: Outcome) -> None:
    stale = outcome.extra["stale_prod"]
    assert stale.pipeline["jobs"]["deploy-prod"]["status"] == "failed"
    assert re.search(r"v2 is not the newest approval: v3 \(.*\) was approved after it", stale.reason)
    assert "this pipeline is stale and stops" in stale.reason
    first = _built(outcome).package_arn
    assert outcome.extra["prod_after_stale"]["model_package"] == first  # production untouched


def test_deleting_projects_applies_the_repository_deletion_policy(outcome: Outcome) -> None:
    assert outcome.run.deletion == {BUILD_REPO: "archived", DEPLOY_REPO: "archived"}
    assert outcome.extra["other_deletion"] == {BUILD_REPO: "deleted", DEPLOY_REPO: "deleted"}


def test_access_key_mode_hands_ci_masked_protected_keys_and_no_role(outcome: Outcome) -> None:
    for label in (BUILD_REPO, DEPLOY_REPO):
        variables = outcome.extra["other_repos"][label]["variables"]
        assert variables[contract.VAR_AUTH_MODE]["value"] == contract.AUTH_MODE_ACCESS_KEYS
        assert contract.VAR_CI_ROLE not in variables and contract.VAR_CI_PROD_ROLE not in variables
        # The build repository holds the build user's key; the deploy one the staging and production keys.
        expected = (
            {contract.VAR_ACCESS_KEY_ID, contract.VAR_SECRET_ACCESS_KEY}
            if label == BUILD_REPO
            else set(contract.SECRET_VARIABLES)
        )
        assert set(variables) & contract.SECRET_VARIABLES == expected
        for key in expected:
            assert variables[key] == {"value": "[MASKED]", "masked": True, "protected": True}
        plain = {k for k, v in variables.items() if not v["masked"]}
        assert not plain & contract.SECRET_VARIABLES


def test_test_rows_are_abalone_shaped(outcome: Outcome) -> None:
    rows = outcome.extra["rows"]
    assert len(rows) == steps.PREDICTION_ROWS
    for row in rows:
        assert 1 <= float(row[0]) <= 29  # rings
        assert len(row) == 9 and row[1] in {"F", "I", "M"}  # then the raw record a client sends


def test_every_aws_call_of_the_products_principals_is_allowed_by_their_policies(outcome: Outcome) -> None:
    audit = outcome.run.iam
    assert audit is not None, outcome.lines[-1]
    assert audit.denied == [] and audit.unresolved == ()
    project = _project(outcome)
    roles = {p.rsplit("/", 1)[-1] for p in audit.principals}
    # Each duty's principal made calls and each was judged (not just counted). The SageMaker execution
    # role and the launch roles make none here (the local pipeline runs its steps in-process; moto's
    # CloudFormation acts as nobody): tests/unit/templates/test_trust_model.py covers them.
    for duty in ("seed-checkin", "pipeline-trigger", "ci-build", "ci-staging", "ci-prod"):
        assert f"gitlab-mlops-{project.id}-{duty}" in roles, sorted(roles)
    # The merge request pipeline of a feature branch got the build role through its OIDC token.
    assert any(p.endswith(f"{NAME}-model-build:ref_type:branch:ref:{BRANCH}") for p in audit.principals)
    actions = {v.action for v in audit.verdicts}
    # Deploys go through change sets; the local pipeline run registers from the CI job itself.
    assert {"cloudformation:CreateChangeSet", "sagemaker:CreateModelPackage", "sagemaker:InvokeEndpoint",
            "sts:AssumeRoleWithWebIdentity", "secretsmanager:GetSecretValue"} <= actions  # fmt: skip


def _note_table(body: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in body.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_plain_git_clones_and_pushes_with_what_demo_status_prints(outcome: Outcome) -> None:
    project = _project(outcome)
    clone_lines = [line for line in outcome.extra["status_before"] if line.strip().startswith("clone: ")]
    assert any(
        project.build_path in line
        and "credential.helper=store --file=" in line
        and line.strip().startswith("clone: GIT_SSL_CAINFO=")
        for line in clone_lines
    )
    assert any(line.strip().startswith("export GIT_SSL_CAINFO=") for line in outcome.extra["status_before"])
    push = outcome.extra["push_output"]
    assert f"To create a merge request for {BRANCH}, visit:" in push  # GitLab's hint after a push
    assert f"* [new branch]      {BRANCH} -> {BRANCH}" in push


def test_the_merge_request_pipeline_reviews_the_candidate_without_registering_it(outcome: Outcome) -> None:
    review = outcome.extra["mr_pipeline"]
    assert review["source"] == "merge_request_event" and review["sha"] == outcome.extra["branch_sha"]
    assert {n: j["status"] for n, j in review["jobs"].items()} == {
        "unit-tests": "success",
        "pipeline-e2e": "success",
        "run-pipeline": "success",
    }
    assert outcome.extra["registered_by_mr"] == set()
    assert outcome.extra["mr_job_log_file"].is_file()  # every CI job's log under logs/ci/
    page = outcome.extra["mr_pipeline_page"]
    assert page.status_code == 200 and "run-pipeline" in page.text  # the printed URL is served


def test_one_model_note_carries_the_numbers_of_the_evaluation_artifact(outcome: Outcome) -> None:
    [(body, author)] = outcome.extra["mr_notes"]
    assert author.startswith("project_") and "_bot_" in author  # the MR_NOTE_TOKEN's bot user
    evaluation = outcome.extra["mr_evaluation"]
    assert evaluation is not None
    table = _note_table(body)
    first = _built(outcome).metrics
    for name, values in evaluation["regression_metrics"].items():
        candidate, baseline = table[name][0], table[name][1]
        assert candidate == f"{values['value']:.4f}"
        assert baseline == f"{first[name]['value']:.4f}"  # v1: the latest approved one, in production
        report_line = f"test_{name} {values['value']!r}"
        assert report_line in outcome.extra["mr_metrics_report"].splitlines()  # GitLab's metrics report
    assert "latest approved = production (v1)" in body
    assert "**Quality gate: passes**" in body and f"{evaluation['test_rows']} held-out test rows" in body
    assert table["mse"][0] in outcome.extra["mr_page"]  # the merge request's web page shows the note


def test_the_merged_version_records_commit_branch_pipeline_and_merge_request(outcome: Outcome) -> None:
    merged = outcome.extra["merged_mr"]
    assert merged["state"] == "merged"
    build = outcome.extra["second_build"]
    package = build.package
    sha = merged["merge_commit_sha"]
    assert build.pipeline["sha"] == sha
    metadata = package["CustomerMetadataProperties"]
    assert metadata[contract.METADATA_GIT_COMMIT] == sha
    assert metadata[contract.METADATA_GIT_BRANCH] == "main"
    assert metadata[contract.METADATA_MERGE_REQUEST_URL] == merged["web_url"]
    assert metadata[contract.METADATA_PIPELINE_URL] == build.pipeline["web_url"]
    assert package["MetadataProperties"]["CommitId"] == sha
    description = package["ModelPackageDescription"]
    assert sha in description and merged["web_url"] in description
    first = _built(outcome).package["CustomerMetadataProperties"]
    assert first[contract.METADATA_MERGE_REQUEST_URL] == contract.METADATA_UNKNOWN  # the seed commit had none


def test_demo_status_shows_each_version_its_commit_and_where_it_runs(outcome: Outcome) -> None:
    sha = outcome.extra["merged_mr"]["merge_commit_sha"]
    lines = outcome.extra["status_after"]
    second = next(line for line in lines if line.strip().startswith("v2 "))
    mr_url = outcome.extra["merged_mr"]["web_url"]
    assert second.strip() == f"v2 Approved: commit {sha[:8]} (main), merge request {mr_url} -> staging"
    first = next(line for line in lines if line.strip().startswith("v1 "))
    assert first.strip().startswith("v1 Approved: commit ") and first.strip().endswith("-> prod")
    environments = {e["name"]: e for e in outcome.extra["deploy_environments"]}
    assert set(environments) == {"staging", "production"}
    staging_endpoint = outcome.extra["second_staging"]["name"]
    assert environments["staging"]["external_url"].endswith(f"#/endpoints/{staging_endpoint}")
    assert any(line.strip().startswith("environment staging serves v2: https://") for line in lines)
    assert any(line.strip().startswith("environment production serves v1: https://") for line in lines)
