"""The whole demo once, on its own sandbox (moto, GitLab stand-in, gitlab-ci-local), and facts at each step.

One module-scoped run: the default lifecycle with RepositoryDeletionPolicy=archive, plus an extra stage
before the project is deleted that retrains on other data, rejects that model (nothing deploys), approves
it after all (it replaces the first in staging only), and creates and deletes a second project
(CI access-key mode, policy delete). Tests then assert what each step left behind.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlops_common import contract

from scripts.sandbox import demo
from scripts.sandbox.lab import BUILD_REPO, DEPLOY_REPO, Lab, Project
from scripts.sandbox.services import new_project_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NAME = "abalone-e2e"
SUMMARY = re.compile(r"^demo: OK stages=(\d+)/(\d+) seconds=(\d+\.\d) test_mse=(\d+\.\d\d)$")


@dataclass
class Outcome:
    code: int
    lines: list[str]
    run: demo.Run
    extra: dict[str, Any] = field(default_factory=dict)


def _retrain_on_other_data(run: demo.Run, lab: Lab, found: dict[str, Any]) -> None:
    """A user points the build at other data (a CI/CD variable) and runs the pipeline from GitLab."""
    project = run.project
    assert project is not None
    rows = lab.read_s3("s3://sagemaker-servicecatalog-seedcode-us-east-1/dataset/abalone-dataset.csv")
    subset = b"".join(rows.splitlines(keepends=True)[::2])  # every other abalone: a different model
    lab.s3.put_object(Bucket=project.artifact_bucket, Key="data/abalone-half.csv", Body=subset)
    repo = lab.gitlab().projects.get(project.build_project_id)
    repo.variables.create(
        {"key": "PIPELINE_INPUT_DATA", "value": f"s3://{project.artifact_bucket}/data/abalone-half.csv"}
    )
    newest = max(p["id"] for p in lab.pipelines(project.build_project_id))
    repo.pipelines.create({"ref": "main"})
    found["second_build"] = demo.step_build(lab, run.report, project, newer_than=newest, source="api")


def _extra(run: demo.Run, lab: Lab, found: dict[str, Any]) -> None:
    project = run.project
    assert project is not None
    junit = run.deploy["junit"]
    found["junit"] = junit.read_text() if junit else ""
    first_staging = lab.endpoint(project, "staging")
    rows = lab.test_rows(run.build["package"], 20)
    found["rows"] = rows
    found["first_staging"] = first_staging
    found["first_predictions"] = lab.predict(first_staging["name"], [r[1:] for r in rows])
    found["staging_refusal"] = lab.refusal(first_staging["name"], rows[0][1:-1])

    _retrain_on_other_data(run, lab, found)
    second = found["second_build"]["package"]["ModelPackageArn"]
    found["pipelines_before_reject"] = [p["id"] for p in lab.pipelines(project.deploy_project_id)]
    demo.step_reject(lab, run.report, project, second)
    time.sleep(1)
    found["pipelines_after_reject"] = [p["id"] for p in lab.pipelines(project.deploy_project_id)]
    found["status_after_reject"] = lab.sm.describe_model_package(ModelPackageName=second)[
        "ModelApprovalStatus"
    ]

    found["second_deploy"] = demo.step_approve(lab, run.report, project, second)
    found["second_staging"] = lab.endpoint(project, "staging")
    found["second_predictions"] = lab.predict(found["second_staging"]["name"], [r[1:] for r in rows])
    found["prod_after_second"] = lab.endpoint(project, "prod")

    other = lab.create_project("abalone-other", new_project_id(), "delete", auth_mode="access-keys")
    found["other_repos"] = lab.repositories(other)
    _, found["other_deletion"] = lab.delete_project(other)
    found["other_project"] = other


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp("demo") / ".sandbox"
    lines: list[str] = []
    run = demo.Run(demo.Report(lines.append))
    found: dict[str, Any] = {}
    code = demo.full_run(
        root, NAME, "archive", "oidc", keep=False, extra=lambda r, lab: _extra(r, lab, found), run=run
    )
    Path(tmp_path_factory.getbasetemp() / "demo-output.txt").write_text("\n".join(lines))
    yield Outcome(code, lines, run, found)


def _project(outcome: Outcome) -> Project:
    assert outcome.run.project is not None, outcome.lines[-1]
    return outcome.run.project


def test_the_demo_succeeds_and_ends_with_the_summary_line(outcome: Outcome) -> None:
    assert outcome.code == 0, "\n".join(outcome.lines[-40:])
    match = SUMMARY.match(outcome.lines[-1].splitlines()[-1])
    assert match, outcome.lines[-1]
    passed, total, seconds, mse = match.groups()
    assert passed == total == str(len(demo.FULL_STAGES) + 1)
    assert float(seconds) > 10
    metrics = outcome.run.build["metrics"]
    assert mse == f"{metrics['mse']['value']:.2f}"
    summary = outcome.lines[-1]
    for stage in demo.FULL_STAGES:
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
    assert deploy_vars[contract.VAR_CI_ROLE].endswith(f"role/gitlab-mlops/gitlab-mlops-{project.id}-ci-staging")
    assert deploy_vars[contract.VAR_CI_PROD_ROLE].endswith(f"role/gitlab-mlops/gitlab-mlops-{project.id}-ci-prod")


def test_the_build_registers_a_pending_package_with_real_metrics(outcome: Outcome) -> None:
    project = _project(outcome)
    build = outcome.run.build
    assert build["pipeline"]["status"] == "success"
    assert build["pipeline"]["source"] == "push"
    assert build["pipeline"]["jobs"]["run-pipeline"]["status"] == "success"
    package = build["package"]
    assert package["ModelApprovalStatus"] == contract.PENDING
    assert package["ModelPackageGroupName"] == project.package_group
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert statistics.startswith(f"s3://{project.artifact_bucket}/") and statistics.endswith(
        "/evaluation.json"
    )
    mse = build["metrics"]["mse"]["value"]
    assert 1.0 < mse < 6.0  # the pipeline's own quality gate is 6.0
    assert abs(build["metrics"]["rmse"]["value"] ** 2 - mse) < 1e-6


def test_approval_starts_the_deploy_pipeline_with_the_package(outcome: Outcome) -> None:
    deploy = outcome.run.deploy
    arn = outcome.run.build["package"]["ModelPackageArn"]
    assert deploy["pipeline"]["source"] == "trigger"
    assert deploy["variables"][contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] == arn
    assert deploy["variables"][contract.PIPELINE_VAR_APPROVAL_STATUS] == contract.APPROVED
    assert {n: j["status"] for n, j in deploy["pipeline"]["jobs"].items()} == {
        "build": "success",
        "deploy-staging": "success",
        "test-staging": "success",
        "deploy-prod": "manual",
    }


def test_staging_test_passed_on_real_predictions(outcome: Outcome) -> None:
    report = outcome.extra["junit"]
    suites = re.search(r"<testsuite [^>]*tests=\"(\d+)\"[^>]*failures=\"(\d+)\"", report)
    assert suites, report[:500]
    assert int(suites.group(1)) >= 1 and suites.group(2) == "0"
    assert "<failure" not in report
    assert 'name="malformed-record-refused"' in report  # the staging test sent a mis-shaped record too


def test_endpoints_in_service_and_production_predicts_rings(outcome: Outcome) -> None:
    arn = outcome.run.build["package"]["ModelPackageArn"]
    first_staging = outcome.extra["first_staging"]
    prod = outcome.run.prod["prod"]
    assert first_staging["status"] == prod["status"] == "InService"
    assert first_staging["model_package"] == prod["model_package"] == arn
    assert outcome.run.prod["pipeline"]["jobs"]["deploy-prod"]["status"] == "success"
    prediction = outcome.run.prediction
    assert len(prediction["predictions"]) == len(prediction["truth"]) == demo.PREDICTION_ROWS
    assert all(1.0 <= p <= 30.0 for p in prediction["predictions"])
    assert prediction["mae"] < 3.0
    truth = [float(r[0]) for r in outcome.extra["rows"]]
    assert truth == prediction["truth"]


def test_staging_and_production_take_raw_records_and_refuse_a_mis_shaped_one(outcome: Outcome) -> None:
    prediction = outcome.run.prediction
    records = prediction["records"]
    assert [len(r) for r in records] == [8] * demo.PREDICTION_ROWS  # sex,length,...,shell_weight
    assert {r[0] for r in records} <= {"F", "I", "M"}
    # the same model in staging and production: the same answers to the same raw records
    assert outcome.extra["first_predictions"] == prediction["predictions"]
    for refused in (prediction["refused"], outcome.extra["staging_refusal"]):
        assert refused["code"] == "ModelError"
        assert refused["status"] == 400
        assert "expected 8 values" in refused["message"]


def test_rejecting_a_model_deploys_nothing(outcome: Outcome) -> None:
    assert outcome.extra["status_after_reject"] == contract.REJECTED
    assert outcome.extra["pipelines_after_reject"] == outcome.extra["pipelines_before_reject"]


def test_a_second_approved_model_replaces_the_first_in_staging_only(outcome: Outcome) -> None:
    first = outcome.run.build["package"]["ModelPackageArn"]
    second_build = outcome.extra["second_build"]
    second = second_build["package"]["ModelPackageArn"]
    assert second != first and second_build["pipeline"]["source"] == "api"
    deploy = outcome.extra["second_deploy"]
    assert deploy["variables"][contract.PIPELINE_VAR_MODEL_PACKAGE_ARN] == second
    assert deploy["pipeline"]["id"] > outcome.run.deploy["pipeline"]["id"]
    before, after = outcome.extra["first_staging"], outcome.extra["second_staging"]
    assert after["name"] == before["name"]
    # moto updates the endpoint config in place (AWS would replace it): the model behind it is what changes
    assert after["model"] != before["model"]
    assert after["model_data"] != before["model_data"] or after["model_package"] != before["model_package"]
    assert after["model_package"] == second
    assert outcome.extra["first_predictions"] != outcome.extra["second_predictions"]
    assert outcome.extra["prod_after_second"]["model_package"] == first


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
    assert len(rows) == demo.PREDICTION_ROWS
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
    # role makes none here: the local pipeline runs its steps in-process (tests/unit/templates covers it).
    for duty in ("seed-checkin", "pipeline-trigger", "ci-build", "ci-staging", "ci-prod"):
        assert f"gitlab-mlops-{project.id}-{duty}" in roles, sorted(roles)
    assert "gitlab-mlops-s3-template-launch" in roles
    actions = {v.action for v in audit.verdicts}
    assert {"cloudformation:CreateStack", "sagemaker:CreatePipeline", "sagemaker:InvokeEndpoint",
            "sts:AssumeRoleWithWebIdentity"} <= actions  # fmt: skip
