"""run-pipeline's own decisions, without running a pipeline: parameters, reports, the closing lines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from pipelines import run_pipeline
from pipelines.abalone import pipeline as abalone
from pipelines.provenance import Provenance

EVALUATION = {"regression_metrics": {"mse": {"value": 4.25, "standard_deviation": 2.0}, "rmse": {"value": 2.0615},
                                     "mae": {"value": 1.5}, "r2": {"value": 0.55}}, "test_rows": 627}
DEFINITION = {"Parameters": [{"Name": n, "Type": "String", "DefaultValue": "none"} for n in
                             (abalone.PARAM_COMMIT, abalone.PARAM_BRANCH, abalone.PARAM_REPOSITORY,
                              abalone.PARAM_PIPELINE_URL, abalone.PARAM_MERGE_REQUEST_URL)]
              + [{"Name": abalone.PARAM_REGISTER, "Type": "Boolean", "DefaultValue": True},
                 {"Name": "MseThreshold", "Type": "Float", "DefaultValue": 6.0}]}


def config(**overrides: object) -> run_pipeline.RunConfig:
    values: dict[str, object] = {
        "region": "us-east-1", "role_arn": "arn:aws:iam::1:role/r", "artifact_bucket": "b",
        "model_package_group_name": "g", "pipeline_name": "demo-model-build",
        "provenance": Provenance("a" * 40, "main"),
    }
    values.update(overrides)
    return run_pipeline.RunConfig(**values)  # type: ignore[arg-type]


def report(**overrides: object) -> run_pipeline.RunReport:
    values: dict[str, object] = {"pipeline_name": "p", "execution_id": "local-1", "status": "Succeeded",
                                 "candidate": False, "threshold": 6.0, "evaluation": EVALUATION}
    values.update(overrides)
    return run_pipeline.RunReport(**values)  # type: ignore[arg-type]


def test_execution_parameters_carry_provenance_and_a_candidate_never_registers():
    params = run_pipeline.execution_parameters(config(candidate=True), DEFINITION)
    assert params[abalone.PARAM_COMMIT] == "a" * 40 and params[abalone.PARAM_BRANCH] == "main"
    assert params[abalone.PARAM_REGISTER] == "false"
    assert abalone.PARAM_REGISTER not in run_pipeline.execution_parameters(config(), DEFINITION)


def test_explicit_parameters_win_and_undeclared_automatic_ones_are_left_out():
    given = config(parameters={abalone.PARAM_BRANCH: "mine", "SplitSeed": "7"})
    params = run_pipeline.execution_parameters(given, {"Parameters": [{"Name": "SplitSeed"}]})
    assert params == {abalone.PARAM_BRANCH: "mine", "SplitSeed": "7"}


def test_candidate_mode_needs_the_register_model_parameter():
    with pytest.raises(run_pipeline.ConfigError, match="RegisterModel"):
        run_pipeline.execution_parameters(config(candidate=True), {"Parameters": []})


def test_threshold_comes_from_the_parameter_or_the_definition_default():
    assert run_pipeline.threshold_of(DEFINITION, {}) == 6.0
    assert run_pipeline.threshold_of(DEFINITION, {"MseThreshold": "5.5"}) == 5.5


def test_reports_hold_the_same_numbers_as_the_evaluation(tmp_path: Path):
    run_pipeline.write_reports(tmp_path, report(registered_arn="arn:x/1"))
    assert json.loads((tmp_path / "evaluation.json").read_text()) == EVALUATION
    assert (tmp_path / "metrics.txt").read_text().splitlines() == [
        "test_mae 1.5", "test_mse 4.25", "test_r2 0.55", "test_rmse 2.0615", "test_rows 627"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["test_mse"] == 4.25 and run["quality_gate_passed"] is True
    assert run["registered_model_package_arn"] == "arn:x/1"


def test_closing_lines_name_mse_threshold_and_outcome():
    assert run_pipeline.closing_lines(report(registered_arn="arn:x/1")) == (
        ["quality gate passed: test MSE 4.2500 <= the threshold 6 (MseThreshold)", "registered arn:x/1"], [])
    out, err = run_pipeline.closing_lines(report(candidate=True))
    assert out[-1].startswith("candidate evaluated, not registered") and err == []
    failed = report(status="Failed", threshold=4.0, failure_reason="step FailMSEAboveThreshold failed: MSE 4.25")
    assert run_pipeline.closing_lines(failed)[1][-1] == (
        "run-pipeline: quality gate failed: test MSE 4.2500 is above the threshold 4 (MseThreshold); "
        "nothing was registered")
    broken = report(status="Failed", evaluation=None, failure_reason="step TrainAbaloneModel failed: boom")
    assert run_pipeline.closing_lines(broken) == (
        [], ["run-pipeline: execution local-1 failed: step TrainAbaloneModel failed: boom"])


def test_cli_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch):
    for key, value in {"SAGEMAKER_EXECUTION_ROLE_ARN": "arn:aws:iam::1:role/r", "ARTIFACT_BUCKET": "b",
                       "MODEL_PACKAGE_GROUP_NAME": "g", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    args = argparse.Namespace(region=None, role_arn=None, artifact_bucket=None, model_package_group_name=None,
                              pipeline_name=None, project_name=None, project_id=None,
                              module_name=run_pipeline.DEFAULT_MODULE, parameter=[], input_data="", candidate=True,
                              no_step_cache=True, no_spot=False)
    loaded = run_pipeline.load_config(args, {**dict(__import__("os").environ), "CI": "true",
                                             "CI_COMMIT_SHA": "e" * 40})
    assert loaded.candidate and loaded.provenance.commit == "e" * 40
    assert loaded.step_caching is False and loaded.spot_training is True
