"""The staging test passes on good predictions and fails on wrong, unparseable or slow ones."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from steps.build import build
from steps.common import Project, StepError
from steps.deploy import Waiting, deploy
from steps.staging_test import (
    Invocations,
    Reference,
    Row,
    TestSettings,
    bias_bound,
    endpoint_invoker,
    evaluate,
    invoke_all,
    main,
    malformed_record,
    mse_bound,
    parse_predictions,
    parse_test_rows,
    probe_malformed,
    run_staging_test,
    sample_rows,
)

SEED = Path(__file__).resolve().parents[3]
# Held-out rows as model-build writes them: no header, target (rings) first, then the features.
TEST_ROWS = "10,0.455,0.365,0.095\n7,0.35,0.265,0.09\n9,0.53,0.42,0.135\n16,0.44,0.365,0.125\n"
TARGETS = [10.0, 7.0, 9.0, 16.0]
REFERENCE_MSE = 4.0
# moto's endpoints answer every request with a canned body: the malformed-record probe has its own tests.
NO_PROBE = TestSettings(check_malformed=False, rows_per_request=1)


def fixed_clock(step_seconds: float) -> Iterator[float]:
    now = 0.0
    while True:
        yield now
        now += step_seconds


@pytest.fixture
def staging(client: Any, registry: Any, tmp_path: Path) -> dict[str, Any]:
    """An approved package deployed to staging in moto; returns what the test step reads."""
    registry.group()
    arn = registry.package(mse=REFERENCE_MSE, test_rows=TEST_ROWS)
    project = Project.from_env(os.environ)
    build(registry.sm, project, arn, SEED, tmp_path)
    result = deploy(
        client("cloudformation"),
        client("sagemaker"),
        project,
        "staging",
        (SEED / "endpoint-config-template.yml").read_text(),
        tmp_path,
        "deploy-1",
        Waiting(delay_seconds=0, sleep=lambda _: None),
        lambda _: None,
    )
    return {
        "build_dir": tmp_path,
        "endpoint": result.endpoint_name,
        "package": json.loads((tmp_path / "model-package.json").read_text()),
    }


def junit_cases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()  # noqa: S314 - our own report
    return {case.get("name", ""): case for case in root.iter("testcase")}


def test_passes_when_the_endpoint_predicts_as_well_as_the_registered_evaluation(
    queue_predictions: Any, client: Any, staging: dict[str, Any], tmp_path: Path
):
    predictions = [12.0, 5.0, 9.5, 14.5]  # MSE (4 + 4 + 0.25 + 2.25) / 4 = 2.625 <= 4.0 + ...
    queue_predictions([f"{p}\n" for p in predictions])
    junit = tmp_path / "report.xml"
    invoke = endpoint_invoker(client("sagemaker-runtime"), staging["endpoint"])
    logs: list[str] = []
    passed = run_staging_test(
        client("s3"), invoke, staging["package"], staging["endpoint"], NO_PROBE, junit, logs.append
    )
    assert passed, logs
    cases = junit_cases(junit)
    assert set(cases) == {"responses-parse", "mse-within-bound", "bias-within-bound", "latency-p95"}
    assert all(case.find("failure") is None for case in cases.values())
    shown = cases["mse-within-bound"].findtext("system-out") or ""
    assert "MSE 2.6250 on 4 of 4" in shown
    assert "evaluation MSE 4.0000 + k=3 x sd of per-row squared error" in shown
    # The report carries the measured value, the bound and how it was computed as properties too.
    properties = {p.get("name"): p.get("value") for p in cases["mse-within-bound"].iter("property")}
    assert properties["measured"] == "2.625"
    assert set(properties) == {"measured", "bound", "bound_computed_as"}


def test_fails_when_the_endpoint_predicts_wrong(
    queue_predictions: Any, client: Any, staging: dict[str, Any], tmp_path: Path
):
    queue_predictions(["1.0", "1.0", "1.0", "1.0"])  # MSE (81+36+64+225)/4 = 101.5 vs 4.0
    junit = tmp_path / "report.xml"
    invoke = endpoint_invoker(client("sagemaker-runtime"), staging["endpoint"])
    passed = run_staging_test(
        client("s3"), invoke, staging["package"], staging["endpoint"], NO_PROBE, junit, lambda _: None
    )
    assert not passed
    # Four rows leave the MSE a wide allowance; the bias (every prediction 9.5 rings low) is far outside its.
    failure = junit_cases(junit)["bias-within-bound"].find("failure")
    assert failure is not None
    assert "|mean error| 9.5000 (predictions below targets)" in failure.get("message", "")
    assert "|evaluation bias| 1.7321" in failure.get("message", "")  # sqrt(mse 4 - sd 1^2)


def test_cli_exits_non_zero_and_writes_junit_when_predictions_are_wrong(
    queue_predictions: Any, staging: dict[str, Any], tmp_path: Path, capsys: Any
):
    queue_predictions(["30", "30", "30", "30"])
    junit = tmp_path / "junit.xml"
    assert (
        main(
            [
                "--build-dir",
                str(staging["build_dir"]),
                "--junit",
                str(junit),
                "--no-malformed-check",
                "--rows-per-request",
                "1",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "FAIL mse-within-bound" in out
    assert "production is not deployed" in out
    root = ET.parse(junit).getroot()  # noqa: S314 - our own report
    assert root.get("failures") == "2"  # MSE and bias
    assert not (staging["build_dir"] / "staging-passed.json").exists()


def test_cli_passes_on_good_predictions(
    queue_predictions: Any, staging: dict[str, Any], tmp_path: Path, capsys: Any
):
    queue_predictions(["10,", "7", "9", "16"])
    assert (
        main(
            [
                "--build-dir",
                str(staging["build_dir"]),
                "--junit",
                str(tmp_path / "j.xml"),
                "--no-malformed-check",
                "--rows-per-request",
                "1",
            ]
        )
        == 0
    )
    assert "PASS mse-within-bound" in capsys.readouterr().out
    # What the production job's gate reads: the package this pipeline's staging test passed with.
    passed = json.loads((staging["build_dir"] / "staging-passed.json").read_text())
    assert passed["model_package_arn"] == staging["package"]["arn"]


def test_fails_when_responses_do_not_parse(aws: str, client: Any, staging: dict[str, Any], tmp_path: Path):
    # Nothing queued: moto answers "body", which is no prediction at all.
    junit = tmp_path / "report.xml"
    invoke = endpoint_invoker(client("sagemaker-runtime"), staging["endpoint"])
    passed = run_staging_test(
        client("s3"), invoke, staging["package"], staging["endpoint"], NO_PROBE, junit, lambda _: None
    )
    assert not passed
    cases = junit_cases(junit)
    assert cases["responses-parse"].find("failure") is not None
    assert cases["mse-within-bound"].find("failure") is not None


def rows_and_answers() -> tuple[list[Row], dict[str, bytes]]:
    rows = parse_test_rows(TEST_ROWS, "test.csv")
    answers = {row.features: f"{row.target + 1}".encode() for row in rows}  # MSE 1.0
    return rows, answers


def test_fails_when_p95_latency_exceeds_the_bound(tmp_path: Path):
    rows, answers = rows_and_answers()
    clock = fixed_clock(0.75)  # every clock read advances 0.75 s: each request takes 750 ms
    invocations = invoke_all(rows, answers.__getitem__, 1, lambda: next(clock))
    reference = Reference(mse=1.0, bias=1.0)
    checks = {
        c.name: c
        for c in evaluate(rows, len(rows), invocations, reference, TestSettings(max_p95_latency_ms=500))
    }
    assert checks["mse-within-bound"].passed
    assert not checks["latency-p95"].passed
    assert "p95 latency 750.0 ms" in checks["latency-p95"].message
    relaxed = evaluate(rows, len(rows), invocations, reference, TestSettings(max_p95_latency_ms=800))
    assert all(check.passed for check in relaxed)


def test_predictions_may_be_separated_by_newlines_or_commas():
    assert parse_predictions(b"1.5\n2.5\n", 2) == [1.5, 2.5]
    assert parse_predictions(b"1.5,2.5", 2) == [1.5, 2.5]
    with pytest.raises(ValueError, match="expected 3 prediction"):
        parse_predictions(b"1.5,2.5", 3)
    with pytest.raises(ValueError):
        parse_predictions(b'{"predictions": [1]}', 1)
    with pytest.raises(ValueError, match="non-finite"):
        parse_predictions(b"nan", 1)


def test_batched_requests_split_the_answer_across_rows():
    rows, answers = rows_and_answers()

    def invoke(payload: str) -> bytes:
        return b",".join(answers[line] for line in payload.split("\n"))

    invocations = invoke_all(rows, invoke, 3)
    assert invocations.predictions == [t + 1 for t in TARGETS]
    assert len(invocations.latencies_s) == 2


def test_the_bounds_are_k_standard_errors_of_the_rows_own_spread():
    squared = [1.0, 9.0, 4.0, 0.0]  # sample sd 4.0415, n 4: standard error 2.0207
    bound = mse_bound(Reference(3.5, None), squared, TestSettings(mse_k=2.0, mse_abs_tolerance=0.0))
    assert bound.value == pytest.approx(3.5 + 2 * 2.02073, abs=1e-4)
    assert bound.how == "evaluation MSE 3.5000 + k=2 x sd of per-row squared error 4.0415 / sqrt(4) (floor 0)"
    # A near-perfect model still gets the absolute floor.
    assert mse_bound(Reference(0.0, 0.0), [0.0, 0.0], TestSettings(mse_abs_tolerance=0.01)).value == 0.01
    errors = [1.0, -3.0, 2.0, 0.0]
    assert bias_bound(Reference(3.5, 0.5), errors, TestSettings(bias_k=1.0)).value == pytest.approx(
        0.5 + 2.1602 / 2, abs=1e-4
    )
    assert (
        "0 (evaluation.json has no standard_deviation)"
        in bias_bound(Reference(3.5, None), errors, TestSettings()).how
    )


def test_a_model_shifted_by_one_ring_fails_the_bias_check_on_many_rows():
    rows = [Row(float(5 + i % 15), f"r{i}") for i in range(600)]
    shifted = Invocations(
        predictions=[r.target + 1 + (0.5 if i % 2 else -0.5) for i, r in enumerate(rows)], latencies_s=[0.01]
    )
    # the evaluation saw the same errors without the shift: MSE 0.25, bias 0
    checks = {c.name: c for c in evaluate(rows, 600, shifted, Reference(0.25, 0.0), TestSettings())}
    assert not checks["bias-within-bound"].passed
    assert not checks["mse-within-bound"].passed


def test_every_held_out_row_is_sent_by_default():
    rows = [Row(float(i), str(i)) for i in range(1000)]
    assert sample_rows(rows, TestSettings().max_rows, seed=0) == rows


def test_sample_is_capped_reproducible_and_in_file_order():
    rows = [Row(float(i), str(i)) for i in range(100)]
    first = sample_rows(rows, 10, seed=0)
    assert len(first) == 10
    assert first == sample_rows(rows, 10, seed=0)
    assert [r.target for r in first] == sorted(r.target for r in first)
    assert sample_rows(rows, 500, seed=0) == rows


def test_test_data_with_a_header_is_refused_with_a_hint():
    with pytest.raises(StepError, match="no header and the target in the first column"):
        parse_test_rows("rings,length\n10,0.4\n", "s3://b/test.csv")


def test_settings_come_from_ci_variables():
    settings = TestSettings.from_env(
        {
            "STAGING_TEST_MAX_ROWS": "50",
            "STAGING_TEST_MAX_P95_LATENCY_MS": "250",
            "STAGING_TEST_MSE_K": "2",
            "STAGING_TEST_BIAS_K": "4",
        }
    )
    assert (settings.max_rows, settings.max_p95_latency_ms) == (50, 250.0)
    assert (settings.mse_k, settings.bias_k) == (2.0, 4.0)
    with pytest.raises(StepError, match="STAGING_TEST_MSE_K, STAGING_TEST_BIAS_K .* must be >= 0"):
        TestSettings.from_env({"STAGING_TEST_MSE_K": "-1"})
    with pytest.raises(StepError, match="STAGING_TEST_MAX_ROWS='many'"):
        TestSettings.from_env({"STAGING_TEST_MAX_ROWS": "many"})


def test_a_failed_invocation_is_reported_not_raised():
    from botocore.exceptions import ClientError

    rows, _ = rows_and_answers()

    def invoke(payload: str) -> bytes:
        raise ClientError({"Error": {"Code": "ModelError", "Message": "bad input"}}, "InvokeEndpoint")

    invocations = invoke_all(rows, invoke, 2)
    assert invocations.predictions == [None] * 4
    assert "ModelError: bad input" in invocations.errors[0]
    checks = evaluate(rows, 4, invocations, Reference(1.0, None), TestSettings())
    assert [c.passed for c in checks] == [False, False, False, True]
    assert isinstance(invocations, Invocations)


RAW_ROW = Row(10.0, "M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15")


def model_error(status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": "ModelError", "Message": f"Received client error ({status}) from primary"},
            "OriginalStatusCode": status,
            "ResponseMetadata": {"HTTPStatusCode": 424},
        },
        "InvokeEndpoint",
    )


def test_the_malformed_record_is_the_record_without_its_last_value():
    assert malformed_record(RAW_ROW) == "M,0.455,0.365,0.095,0.514,0.2245,0.101"


def test_a_client_error_for_a_malformed_record_passes():
    sent: list[str] = []

    def invoke(payload: str) -> bytes:
        sent.append(payload)
        raise model_error(400)

    check = probe_malformed(RAW_ROW, invoke)
    assert check.passed, check.message
    assert sent == ["M,0.455,0.365,0.095,0.514,0.2245,0.101"]
    assert "status 400" in check.message


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_for_a_malformed_record_fails(status: int):
    def invoke(payload: str) -> bytes:
        raise model_error(status)

    check = probe_malformed(RAW_ROW, invoke)
    assert not check.passed
    assert "not with a client error" in check.message


def test_a_prediction_for_a_malformed_record_fails():
    check = probe_malformed(RAW_ROW, lambda payload: b"9.5\n")
    assert not check.passed
    assert "got an answer instead of a 4xx" in check.message


def test_the_probe_runs_with_the_other_checks_by_default(
    queue_predictions: Any, client: Any, staging: dict[str, Any], tmp_path: Path
):
    queue_predictions(["10", "7", "9", "16", "12"])  # moto also answers the malformed record: a failure
    junit = tmp_path / "report.xml"
    invoke = endpoint_invoker(client("sagemaker-runtime"), staging["endpoint"])
    assert not run_staging_test(
        client("s3"),
        invoke,
        staging["package"],
        staging["endpoint"],
        TestSettings(rows_per_request=1),
        junit,
        lambda _: None,
    )
    cases = junit_cases(junit)
    assert cases["malformed-record-refused"].find("failure") is not None
    assert cases["mse-within-bound"].find("failure") is None
    assert TestSettings.from_env({"STAGING_TEST_CHECK_MALFORMED": "false"}).check_malformed is False


class FakeAsyncRuntime:
    """InvokeEndpointAsync that 'processes' each input at once: output = targets + shift, in moto S3."""

    def __init__(self, s3: Any, answers: dict[str, float], shift: float = 0.0, fail: bool = False) -> None:
        self.s3, self.answers, self.shift, self.fail, self.calls = s3, answers, shift, fail, 0

    def invoke_endpoint_async(self, **kwargs: Any) -> dict[str, str]:
        self.calls += 1
        bucket, key = kwargs["InputLocation"][5:].split("/", 1)
        lines = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        output = f"s3://{bucket}/out/{self.calls}.out"
        failure = f"s3://{bucket}/failure/{self.calls}-error.out"
        if self.fail:
            self.s3.put_object(Bucket=bucket, Key=f"failure/{self.calls}-error.out", Body=b"ModelError")
        else:
            body = "\n".join(str(self.answers[line] + self.shift) for line in lines)
            self.s3.put_object(Bucket=bucket, Key=f"out/{self.calls}.out", Body=body.encode())
        return {"OutputLocation": output, "FailureLocation": failure, "InferenceId": str(self.calls)}


def _async_run(client: Any, registry: Any, runtime: FakeAsyncRuntime) -> Invocations:
    from steps.staging_test import async_requests

    rows, _ = rows_and_answers()
    run = async_requests(client("s3"), runtime, "ep", f"s3://{registry.bucket}/async/in/", 5, poll_s=0)
    return run(rows, 3)


def test_async_requests_are_all_queued_before_their_outputs_are_awaited(client: Any, registry: Any):
    rows, _ = rows_and_answers()
    runtime = FakeAsyncRuntime(client("s3"), {r.features: r.target for r in rows})
    invocations = _async_run(client, registry, runtime)
    assert runtime.calls == 2  # 4 rows, 3 per request
    assert invocations.predictions == TARGETS and not invocations.errors
    checks = {c.name: c for c in evaluate(rows, 4, invocations, Reference(0.0, 0.0), TestSettings(), "async")}
    assert checks["async-queued-completion"].passed, checks["async-queued-completion"].message
    assert "2 of 2 queued requests done" in checks["async-queued-completion"].message
    assert "latency-p95" not in checks


def test_an_async_failure_is_reported_from_its_failure_location(client: Any, registry: Any):
    rows, _ = rows_and_answers()
    invocations = _async_run(client, registry, FakeAsyncRuntime(client("s3"), {}, fail=True))
    assert invocations.predictions == [None] * 4
    assert "failed: ModelError" in invocations.errors[0]
    checks = {c.name: c for c in evaluate(rows, 4, invocations, Reference(0.0, 0.0), TestSettings(), "async")}
    assert not checks["async-queued-completion"].passed


def test_a_batch_transform_is_checked_for_row_count_and_metric(client: Any, registry: Any):
    from steps.staging_test import batch_requests
    from steps.transform import TransformResult

    rows, _ = rows_and_answers()
    s3 = client("s3")

    def transform(input_uri: str) -> TransformResult:
        bucket, prefix = input_uri[5:].split("/", 1)
        lines = s3.get_object(Bucket=bucket, Key=f"{prefix}held-out.csv")["Body"].read().decode().splitlines()
        by_features = {r.features: r.target for r in rows}
        body = "\n".join(str(by_features[line] + 1) for line in lines[:-1])  # one row short, biased
        s3.put_object(Bucket=bucket, Key="out/job/held-out.csv.out", Body=body.encode())
        return TransformResult("job", "Completed", f"s3://{bucket}/out/job/", seconds=1.0)

    invocations = batch_requests(s3, transform, f"s3://{registry.bucket}/batch/in/")(rows, 1)
    checks = {c.name: c for c in evaluate(rows, 4, invocations, Reference(0.0, 0.0), TestSettings(), "batch")}
    assert not checks["transform-row-count"].passed
    assert "expected 4 prediction(s), got 3" in checks["transform-row-count"].message
    assert checks["transform-completed"].passed


def test_metrics_go_in_batches_and_latency_is_timed_on_single_records():
    rows, answers = rows_and_answers()
    sizes: list[int] = []

    def invoke(payload: str) -> bytes:
        lines = payload.split("\n")
        sizes.append(len(lines))
        return b"\n".join(answers[line] for line in lines)

    from steps.staging_test import Reference as Ref

    settings = TestSettings(rows_per_request=3, latency_requests=2, check_malformed=False)
    invocations = invoke_all(rows, invoke, settings.rows_per_request)
    latency = invoke_all(rows[: settings.latency_requests], invoke, 1)
    assert sizes == [3, 1, 1, 1]
    checks = {c.name: c for c in evaluate(rows, 4, invocations, Ref(1.0, 1.0), settings, "realtime", latency)}
    assert "over 2 requests" in checks["latency-p95"].message
