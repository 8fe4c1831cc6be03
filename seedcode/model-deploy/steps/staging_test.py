"""Staging test: send the model's held-out records to the staging endpoint and check what comes back.

The held-out file (the package's TestDataS3Uri) has no header, the target first and then the raw
record exactly as a client sends it (for the Abalone seed: sex,length,...,shell_weight); each
request carries those records unchanged as text/csv.

Checks (each one a JUnit test case, so GitLab shows them on the pipeline's Tests tab):
  responses-parse           every response is text/csv with one number per record sent
  mse-within-bound          MSE on the records <= the registered evaluation MSE + k standard errors
  bias-within-bound         mean prediction error within the evaluation's own bias + k standard errors
  latency-p95               95th percentile of request latency <= the bound
  malformed-record-refused  a record with one value missing gets a 4xx, never a prediction
Exits non-zero when any check fails.

Each hosting mode (steps/hosting.py) is tested for what it promises:
  realtime, serverless  text/csv requests of STAGING_TEST_ROWS_PER_REQUEST rows for the metrics; latency-p95
                        over STAGING_TEST_LATENCY_REQUESTS single-record requests
  async                 every request is first queued (its rows put in S3, InvokeEndpointAsync), then each
                        output awaited: async-queued-completion = all done within STAGING_TEST_ASYNC_TIMEOUT_S
                        (the p95 of queue-to-result times shown); a mis-shaped record is not sent
  batch                 one transform job over the held-out records (uploaded under the artifacts bucket):
                        transform-completed, and transform-row-count = one output line per record

Every held-out row is sent by default (STAGING_TEST_MAX_ROWS caps it to a reproducible sample). The bounds
come from the evaluation's own spread, measured on the rows sent:

  MSE bound   = evaluation MSE + k * sd(per-row squared error) / sqrt(n)          (floor: abs tolerance)
  bias bound  = |evaluation bias| + k * sd(per-row error) / sqrt(n)

n is the number of rows answered; k (default 3) is STAGING_TEST_MSE_K / STAGING_TEST_BIAS_K. The
evaluation's bias follows from its evaluation.json: mse.standard_deviation is the (population) standard
deviation of its errors, so |mean error| = sqrt(mse - sd^2). The endpoint serving the evaluated model
reproduces both numbers; a model shifted by one ring, scaled by 10 % or fed shuffled columns does not.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import statistics
import time
import xml.etree.ElementTree as ET  # noqa: S405 - we only write XML
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from steps.common import (
    EVALUATION_METRICS_KEY,
    MODEL_PACKAGE_FILE,
    STAGING_PASSED_FILE,
    Project,
    StepError,
    deploy_result_file,
    environ,
    read_json,
    read_s3_text,
    run_cli,
    split_s3_uri,
    write_json,
)
from steps.hosting import ASYNC, BATCH, REALTIME, SERVERLESS, Hosting, hosting_file
from steps.transform import TransformResult, run_transform, transform_job_name

# CI/CD variables that override the defaults (flags override both).
ENV_MAX_ROWS = "STAGING_TEST_MAX_ROWS"
ENV_ROWS_PER_REQUEST = "STAGING_TEST_ROWS_PER_REQUEST"
ENV_MSE_K = "STAGING_TEST_MSE_K"
ENV_BIAS_K = "STAGING_TEST_BIAS_K"
ENV_MSE_ABS_TOLERANCE = "STAGING_TEST_MSE_ABS_TOLERANCE"
ENV_MAX_P95_MS = "STAGING_TEST_MAX_P95_LATENCY_MS"
ENV_CHECK_MALFORMED = "STAGING_TEST_CHECK_MALFORMED"
ENV_ASYNC_TIMEOUT = "STAGING_TEST_ASYNC_TIMEOUT_S"
ENV_LATENCY_REQUESTS = "STAGING_TEST_LATENCY_REQUESTS"


@dataclass(frozen=True)
class TestSettings:
    """Knobs of the staging test; see the module docstring for how the bounds use them."""

    __test__ = False  # not a pytest class

    max_rows: int = 0  # 0: every held-out row
    rows_per_request: int = 50  # for the metrics; latency is measured on single-record requests
    latency_requests: int = 50
    mse_k: float = 3.0
    bias_k: float = 3.0
    mse_abs_tolerance: float = 1e-6
    max_p95_latency_ms: float = 1000.0
    check_malformed: bool = True
    async_timeout_s: float = 900.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_rows < 0 or self.rows_per_request < 1 or self.latency_requests < 1:
            raise StepError(
                f"{ENV_MAX_ROWS} must be >= 0 (0: every row), {ENV_ROWS_PER_REQUEST} and "
                f"{ENV_LATENCY_REQUESTS} at least 1"
            )
        if self.mse_k < 0 or self.bias_k < 0 or self.mse_abs_tolerance < 0:
            raise StepError(f"{ENV_MSE_K}, {ENV_BIAS_K} and {ENV_MSE_ABS_TOLERANCE} must be >= 0")
        if self.max_p95_latency_ms <= 0 or self.async_timeout_s <= 0:
            raise StepError(f"{ENV_MAX_P95_MS} and {ENV_ASYNC_TIMEOUT} must be > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TestSettings:
        def get(name: str, convert: Callable[[str], Any], default: Any) -> Any:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return convert(raw)
            except ValueError as exc:
                raise StepError(f"CI/CD variable {name}={raw!r} is not a valid number") from exc

        d = cls()
        return cls(
            max_rows=get(ENV_MAX_ROWS, int, d.max_rows),
            rows_per_request=get(ENV_ROWS_PER_REQUEST, int, d.rows_per_request),
            latency_requests=get(ENV_LATENCY_REQUESTS, int, d.latency_requests),
            mse_k=get(ENV_MSE_K, float, d.mse_k),
            bias_k=get(ENV_BIAS_K, float, d.bias_k),
            mse_abs_tolerance=get(ENV_MSE_ABS_TOLERANCE, float, d.mse_abs_tolerance),
            max_p95_latency_ms=get(ENV_MAX_P95_MS, float, d.max_p95_latency_ms),
            check_malformed=get(ENV_CHECK_MALFORMED, _flag, d.check_malformed),
            async_timeout_s=get(ENV_ASYNC_TIMEOUT, float, d.async_timeout_s),
        )


@dataclass(frozen=True)
class Reference:
    """What the registered evaluation measured on the held-out rows."""

    mse: float
    bias: float | None  # |mean error|; None when evaluation.json has no standard deviation


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(raw)
    return value == "true"


@dataclass(frozen=True)
class Row:
    target: float
    features: str  # one CSV line without the target: the record exactly as a client sends it


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    message: str
    seconds: float = 0.0
    properties: Mapping[str, str] = field(default_factory=dict)  # measured value, bound, how


@dataclass
class Invocations:
    """What the endpoint answered: predictions per row sent (None when unparseable) and latencies."""

    predictions: list[float | None] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    job_errors: list[str] = field(default_factory=list)  # batch: the transform job itself failed


def parse_test_rows(text: str, source: str) -> list[Row]:
    """Held-out CSV (no header, target first) -> rows."""
    rows = []
    for number, record in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not record or all(not cell.strip() for cell in record):
            continue
        if len(record) < 2:
            raise StepError(f"{source} line {number}: expected the target and at least one feature")
        try:
            target = float(record[0])
        except ValueError as exc:
            raise StepError(
                f"{source} line {number}: target {record[0]!r} is not a number (the file must have no "
                "header and the target in the first column)"
            ) from exc
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(record[1:])
        rows.append(Row(target=target, features=buffer.getvalue()))
    if not rows:
        raise StepError(f"{source} holds no rows")
    return rows


def sample_rows(rows: Sequence[Row], max_rows: int, seed: int) -> list[Row]:
    """Every row when max_rows is 0 or covers them, else a reproducible random sample in file order."""
    if max_rows == 0 or len(rows) <= max_rows:
        return list(rows)
    keep = sorted(random.Random(seed).sample(range(len(rows)), max_rows))  # noqa: S311 - not security
    return [rows[i] for i in keep]


def parse_predictions(body: bytes, expected: int) -> list[float]:
    """text/csv response -> numbers; predictions may be separated by newlines or commas."""
    text = body.decode("utf-8").strip()
    cells = [cell.strip() for line in text.splitlines() for cell in line.split(",")]
    cells = [cell for cell in cells if cell]
    if len(cells) != expected:
        raise ValueError(f"expected {expected} prediction(s), got {len(cells)}: {text[:80]!r}")
    values = [float(cell) for cell in cells]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"non-finite prediction in {text[:80]!r}")
    return values


def invoke_all(
    rows: Sequence[Row],
    invoke: Callable[[str], bytes],
    rows_per_request: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Invocations:
    """Send the rows in requests of rows_per_request lines; record predictions, latencies and errors."""
    result = Invocations()
    begin = clock()
    for start in range(0, len(rows), rows_per_request):
        batch = rows[start : start + rows_per_request]
        where = f"rows {start + 1}-{start + len(batch)}"
        sent = clock()
        try:
            body = invoke("\n".join(row.features for row in batch))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            body = None
            result.errors.append(f"{where}: {error.get('Code')}: {error.get('Message')}")
        result.latencies_s.append(clock() - sent)
        if body is None:
            result.predictions.extend([None] * len(batch))
            continue
        try:
            result.predictions.extend(parse_predictions(body, len(batch)))
        except (ValueError, UnicodeDecodeError) as exc:
            result.errors.append(f"{where}: {exc}")
            result.predictions.extend([None] * len(batch))
    result.seconds = clock() - begin
    return result


def malformed_record(row: Row) -> str:
    """The record with its last value dropped: a shape no fixed-column model may answer."""
    cells = next(csv.reader([row.features]))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells[:-1])
    return buffer.getvalue()


def probe_malformed(row: Row, invoke: Callable[[str], bytes]) -> Check:
    """Send a mis-shaped record; pass when the endpoint refuses it with a client error (HTTP 4xx)."""
    record = malformed_record(row)
    begin = time.perf_counter()
    name = "malformed-record-refused"
    try:
        body = invoke(record)
    except ClientError as exc:
        seconds = time.perf_counter() - begin
        error = exc.response.get("Error", {})
        # A ModelError wraps the container's answer: its status is OriginalStatusCode, not the 424.
        status = exc.response.get("OriginalStatusCode")
        if status is None and error.get("Code") != "ModelError":
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = f"{error.get('Code')} (status {status}): {str(error.get('Message', ''))[:160]}"
        refused = isinstance(status, int) and 400 <= status < 500
        verdict = "refused" if refused else "failed, but not with a client error (4xx)"
        return Check(
            name, refused, f"a record of {record.count(',') + 1} values was {verdict}: {detail}", seconds
        )
    return Check(
        name,
        False,
        f"a record of {record.count(',') + 1} values got an answer instead of a 4xx: {body[:80]!r}; "
        "clients sending a wrong record would get a plausible but wrong prediction",
        time.perf_counter() - begin,
    )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Bound:
    """A bound and the words saying how it was computed."""

    value: float
    how: str


def standard_error(values: Sequence[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def mse_bound(reference: Reference, squared_errors: Sequence[float], settings: TestSettings) -> Bound:
    """evaluation MSE + k standard errors of the per-row squared error (at least the absolute floor)."""
    n = len(squared_errors)
    sd = statistics.stdev(squared_errors) if n > 1 else 0.0
    allowance = max(settings.mse_k * standard_error(squared_errors), settings.mse_abs_tolerance)
    return Bound(
        reference.mse + allowance,
        f"evaluation MSE {reference.mse:.4f} + k={settings.mse_k:g} x sd of per-row squared error "
        f"{sd:.4f} / sqrt({n}) (floor {settings.mse_abs_tolerance:g})",
    )


def bias_bound(reference: Reference, errors: Sequence[float], settings: TestSettings) -> Bound:
    """|evaluation bias| + k standard errors of the per-row error."""
    base = reference.bias or 0.0
    source = (
        "|evaluation bias|" if reference.bias is not None else "0 (evaluation.json has no standard_deviation)"
    )
    sd = statistics.stdev(errors) if len(errors) > 1 else 0.0
    return Bound(
        base + settings.bias_k * standard_error(errors),
        f"{source} {base:.4f} + k={settings.bias_k:g} x sd of per-row error {sd:.4f} / sqrt({len(errors)})",
    )


def _bounded(name: str, what: str, measured: float, bound: Bound, detail: str) -> Check:
    passed = measured <= bound.value
    verdict = "<=" if passed else ">"
    return Check(
        name,
        passed,
        f"{what} {measured:.4f} {detail} {verdict} bound {bound.value:.4f} = {bound.how}",
        properties={
            "measured": f"{measured:.6g}",
            "bound": f"{bound.value:.6g}",
            "bound_computed_as": bound.how,
        },
    )


def evaluate(
    rows: Sequence[Row],
    population: int,
    invocations: Invocations,
    reference: Reference,
    settings: TestSettings,
    mode: str = REALTIME,
    latency: Invocations | None = None,
) -> list[Check]:
    """The checks on what the endpoint (or the transform job) answered; `latency` holds the single-record
    requests timed for latency-p95 (default: `invocations` themselves)."""
    checks = []
    bad = [p for p in invocations.predictions if p is None]
    parse_name = "transform-row-count" if mode == BATCH else "responses-parse"
    if invocations.errors:
        shown = "; ".join(invocations.errors[:3])
        checks.append(
            Check(
                parse_name,
                False,
                f"{len(bad)} of {len(rows)} rows got no usable prediction: {shown}",
                invocations.seconds,
            )
        )
    else:
        what = "one output line per record" if mode == BATCH else "every response parsed"
        checks.append(Check(parse_name, True, f"{len(rows)} rows, {what}", invocations.seconds))

    pairs = [(row.target, p) for row, p in zip(rows, invocations.predictions, strict=True) if p is not None]
    if not pairs:
        checks.append(Check("mse-within-bound", False, "no predictions to compute the MSE from"))
        checks.append(Check("bias-within-bound", False, "no predictions to compute the bias from"))
    else:
        errors = [p - target for target, p in pairs]
        squared = [e * e for e in errors]
        rows_used = f"on {len(pairs)} of {population} held-out rows"
        checks.append(
            _bounded(
                "mse-within-bound",
                "MSE",
                statistics.fmean(squared),
                mse_bound(reference, squared, settings),
                rows_used,
            )
        )
        mean_error = statistics.fmean(errors)
        checks.append(
            _bounded(
                "bias-within-bound",
                "|mean error|",
                abs(mean_error),
                bias_bound(reference, errors, settings),
                f"(predictions {'above' if mean_error >= 0 else 'below'} targets) {rows_used}",
            )
        )

    if mode in (REALTIME, SERVERLESS):
        checks.append(latency_check(latency or invocations, settings))
    elif mode == ASYNC:
        checks.append(async_completion_check(invocations, settings))
    else:
        checks.append(transform_check(invocations))
    return checks


def latency_check(invocations: Invocations, settings: TestSettings) -> Check:
    if not invocations.latencies_s:
        return Check("latency-p95", False, "no requests were made")
    p95_ms = percentile(invocations.latencies_s, 95) * 1000
    limit = settings.max_p95_latency_ms
    return Check(
        "latency-p95",
        p95_ms <= limit,
        f"p95 latency {p95_ms:.1f} ms over {len(invocations.latencies_s)} requests "
        f"{'<=' if p95_ms <= limit else '>'} bound {limit:.1f} ms",
        properties={
            "measured": f"{p95_ms:.1f} ms",
            "bound": f"{limit:.1f} ms",
            "bound_computed_as": ENV_MAX_P95_MS,
        },
    )


def async_completion_check(invocations: Invocations, settings: TestSettings) -> Check:
    """Every queued request produced its output within the timeout."""
    name = "async-queued-completion"
    if not invocations.latencies_s:
        return Check(name, False, "no requests were queued")
    waited = max(invocations.latencies_s)
    failed = len(invocations.errors)
    passed = failed == 0 and waited <= settings.async_timeout_s
    return Check(
        name,
        passed,
        f"{len(invocations.latencies_s) - failed} of {len(invocations.latencies_s)} queued requests done; "
        f"slowest {waited:.1f} s, p95 {percentile(invocations.latencies_s, 95):.1f} s "
        f"{'<=' if waited <= settings.async_timeout_s else '>'} bound {settings.async_timeout_s:.0f} s",
        invocations.seconds,
        {
            "measured": f"{waited:.1f} s",
            "bound": f"{settings.async_timeout_s:.0f} s",
            "bound_computed_as": ENV_ASYNC_TIMEOUT,
        },
    )


def transform_check(invocations: Invocations) -> Check:
    ok = not invocations.job_errors
    detail = "completed" if ok else f"failed: {'; '.join(invocations.job_errors[:2])}"
    return Check(
        "transform-completed",
        ok,
        f"transform job {detail} in {invocations.seconds:.1f} s",
        invocations.seconds,
    )


def write_junit(checks: Sequence[Check], path: Path, suite: str, properties: Mapping[str, str]) -> None:
    """A JUnit XML report GitLab renders on the pipeline's Tests tab."""
    failures = sum(not c.passed for c in checks)
    root = ET.Element("testsuites", name=suite, tests=str(len(checks)), failures=str(failures))
    suite_el = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        time=f"{sum(c.seconds for c in checks):.3f}",
    )
    props = ET.SubElement(suite_el, "properties")
    for key, value in properties.items():
        ET.SubElement(props, "property", name=key, value=value)
    for check in checks:
        case = ET.SubElement(
            suite_el, "testcase", classname=suite, name=check.name, time=f"{check.seconds:.3f}"
        )
        if check.properties:
            case_props = ET.SubElement(case, "properties")
            for key, value in check.properties.items():
                ET.SubElement(case_props, "property", name=key, value=value)
        if check.passed:
            ET.SubElement(case, "system-out").text = check.message
        else:
            ET.SubElement(case, "failure", message=check.message, type="AssertionError").text = check.message
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def read_reference(evaluation: Mapping[str, Any], source: str) -> Reference:
    """regression_metrics.mse.value (and its standard_deviation, for the bias) from evaluation.json."""
    try:
        mse_metric = evaluation[EVALUATION_METRICS_KEY]["mse"]
        value = float(mse_metric["value"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StepError(
            f"{source} has no numeric {EVALUATION_METRICS_KEY}.mse.value; the model-build evaluation step "
            "must write it"
        ) from exc
    if not math.isfinite(value) or value < 0:
        raise StepError(f"{source}: {EVALUATION_METRICS_KEY}.mse.value is {value}, not a valid MSE")
    try:
        sd = float(mse_metric["standard_deviation"])
    except (KeyError, TypeError, ValueError):
        return Reference(value, None)
    if not math.isfinite(sd) or sd < 0:
        raise StepError(f"{source}: {EVALUATION_METRICS_KEY}.mse.standard_deviation is {sd}, not valid")
    return Reference(value, math.sqrt(max(value - sd * sd, 0.0)))


def run_staging_test(
    s3: Any,
    invoke: Callable[[str], bytes],
    package: Mapping[str, Any],
    endpoint_name: str,
    settings: TestSettings,
    junit_path: Path,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.perf_counter,
    mode: str = REALTIME,
    run_requests: Callable[[Sequence[Row], int], Invocations] | None = None,
) -> bool:
    """Run the test against `invoke` (a function sending one text/csv payload); True when all checks pass.

    `run_requests` replaces the one-request-at-a-time loop (async: queue all, then await; batch: one
    transform job)."""
    evaluation_uri = str(package["evaluation_s3_uri"])
    test_data_uri = str(package["test_data_s3_uri"])
    try:
        evaluation = json.loads(read_s3_text(s3, evaluation_uri))
    except json.JSONDecodeError as exc:
        raise StepError(f"{evaluation_uri} is not valid JSON: {exc}") from exc
    reference = read_reference(evaluation, evaluation_uri)
    all_rows = parse_test_rows(read_s3_text(s3, test_data_uri), test_data_uri)
    rows = sample_rows(all_rows, settings.max_rows, settings.seed)
    log(f"Invoking {endpoint_name} with {len(rows)} of {len(all_rows)} held-out rows from {test_data_uri}")
    latency = None
    if run_requests is not None:
        invocations = run_requests(rows, settings.rows_per_request)
    else:
        invocations = invoke_all(rows, invoke, settings.rows_per_request, clock)
        if settings.rows_per_request > 1:
            latency = invoke_all(rows[: settings.latency_requests], invoke, 1, clock)
    checks = evaluate(rows, len(all_rows), invocations, reference, settings, mode, latency)
    if settings.check_malformed and mode in (REALTIME, SERVERLESS):
        checks.append(probe_malformed(rows[0], invoke))
    write_junit(
        checks,
        junit_path,
        "staging-endpoint",
        {
            "endpoint": endpoint_name,
            "hosting_mode": mode,
            "model_package_arn": str(package["arn"]),
            "test_data": test_data_uri,
        },
    )
    for check in checks:
        log(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.message}")
    log(f"JUnit report: {junit_path}")
    return all(c.passed for c in checks)


def _client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def _s3_exists(s3: Any, uri: str) -> bool:
    bucket, key = split_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def async_requests(
    s3: Any,
    runtime: Any,
    endpoint_name: str,
    input_prefix: str,
    timeout_s: float,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[Sequence[Row], int], Invocations]:
    """Queue every request first (rows put under `input_prefix`, InvokeEndpointAsync), then await each output
    (or failure) object; latencies are queue-to-result times."""
    bucket, prefix = split_s3_uri(input_prefix.rstrip("/") + "/x")
    prefix = prefix[:-1]

    def run(rows: Sequence[Row], rows_per_request: int) -> Invocations:
        result = Invocations()
        begin = clock()
        pending = []
        for start in range(0, len(rows), rows_per_request):
            batch = rows[start : start + rows_per_request]
            key = f"{prefix}rows-{start + 1:06d}-{start + len(batch):06d}.csv"
            s3.put_object(Bucket=bucket, Key=key, Body="\n".join(r.features for r in batch).encode())
            answer = runtime.invoke_endpoint_async(
                EndpointName=endpoint_name,
                InputLocation=f"s3://{bucket}/{key}",
                ContentType="text/csv",
                Accept="text/csv",
            )
            pending.append(
                (start, batch, clock(), answer["OutputLocation"], answer.get("FailureLocation", ""))
            )
        outcomes: dict[int, tuple[list[float | None], float]] = {}
        while pending:
            still = []
            for start, batch, queued, output, failure in pending:
                where = f"rows {start + 1}-{start + len(batch)}"
                if _s3_exists(s3, output):
                    try:
                        values: list[float | None] = list(
                            parse_predictions(read_s3_text(s3, output).encode(), len(batch))
                        )
                    except ValueError as exc:
                        result.errors.append(f"{where}: {exc}")
                        values = [None] * len(batch)
                    outcomes[start] = (values, clock() - queued)
                elif failure and _s3_exists(s3, failure):
                    result.errors.append(f"{where}: failed: {read_s3_text(s3, failure)[:160]}")
                    outcomes[start] = ([None] * len(batch), clock() - queued)
                elif clock() - queued > timeout_s:
                    result.errors.append(f"{where}: no output at {output} after {timeout_s:.0f} s")
                    outcomes[start] = ([None] * len(batch), clock() - queued)
                else:
                    still.append((start, batch, queued, output, failure))
            pending = still
            if pending:
                sleep(poll_s)
        for start in sorted(outcomes):
            values, waited = outcomes[start]
            result.predictions.extend(values)
            result.latencies_s.append(waited)
        result.seconds = clock() - begin
        return result

    return run


def batch_requests(
    s3: Any,
    transform: Callable[[str], TransformResult],
    input_prefix: str,
) -> Callable[[Sequence[Row], int], Invocations]:
    """Put every record into one file under `input_prefix`, transform it, read `<file>.out` back."""
    bucket, prefix = split_s3_uri(input_prefix.rstrip("/") + "/x")
    key = prefix[:-1] + "held-out.csv"

    def run(rows: Sequence[Row], rows_per_request: int) -> Invocations:
        result = Invocations()
        s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(r.features for r in rows) + "\n").encode())
        ran = transform(f"s3://{bucket}/{key.rsplit('/', 1)[0]}/")
        result.seconds = ran.seconds
        result.latencies_s.append(ran.seconds)
        if ran.status != "Completed":
            result.job_errors.append(f"transform job {ran.job_name} {ran.status}: {ran.failure_reason}")
            result.errors.append(f"transform job {ran.job_name} produced no output")
            result.predictions = [None] * len(rows)
            return result
        output = f"{ran.output_s3_uri.rstrip('/')}/{key.rsplit('/', 1)[1]}.out"
        try:
            result.predictions = list(parse_predictions(read_s3_text(s3, output).encode(), len(rows)))
        except (ValueError, StepError) as exc:
            result.errors.append(f"{output}: {exc}")
            result.predictions = [None] * len(rows)
        return result

    return run


def record_outcome(build_dir: Path, package: Mapping[str, Any], endpoint_name: str, passed: bool) -> None:
    """Leave build/staging-passed.json only when the test passed: the production job reads it."""
    path = build_dir / STAGING_PASSED_FILE
    path.unlink(missing_ok=True)
    if passed:
        write_json(path, {"model_package_arn": str(package["arn"]), "endpoint_name": endpoint_name})


def endpoint_invoker(runtime: Any, endpoint_name: str) -> Callable[[str], bytes]:
    def invoke(payload: str) -> bytes:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType="text/csv",
            Accept="text/csv",
            Body=payload.encode("utf-8"),
        )
        return bytes(response["Body"].read())

    return invoke


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps.staging_test", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--build-dir", type=Path, default=Path("build"), help="the build job's output directory"
    )
    parser.add_argument("--endpoint-name", help="default: from build/staging-deploy.json")
    parser.add_argument("--junit", type=Path, default=Path("build/staging-test-report.xml"))
    parser.add_argument(
        "--max-rows", type=int, help=f"rows to send at most (${ENV_MAX_ROWS}, default 0: all)"
    )
    parser.add_argument("--rows-per-request", type=int, help=f"${ENV_ROWS_PER_REQUEST}, default 50")
    parser.add_argument(
        "--mse-k", type=float, help=f"standard errors allowed on the MSE (${ENV_MSE_K}, default 3)"
    )
    parser.add_argument(
        "--bias-k", type=float, help=f"standard errors allowed on the bias (${ENV_BIAS_K}, default 3)"
    )
    parser.add_argument("--mse-abs-tolerance", type=float, help=f"${ENV_MSE_ABS_TOLERANCE}, default 1e-6")
    parser.add_argument("--max-p95-latency-ms", type=float, help=f"${ENV_MAX_P95_MS}, default 1000")
    parser.add_argument(
        "--no-malformed-check",
        action="store_true",
        help=f"skip malformed-record-refused (${ENV_CHECK_MALFORMED}=false)",
    )
    args = parser.parse_args(argv)

    def body() -> int:
        env = environ()
        project = Project.from_env(env)
        settings = TestSettings.from_env(env)
        overrides = {
            key: value
            for key, value in (
                ("max_rows", args.max_rows),
                ("rows_per_request", args.rows_per_request),
                ("mse_k", args.mse_k),
                ("bias_k", args.bias_k),
                ("mse_abs_tolerance", args.mse_abs_tolerance),
                ("max_p95_latency_ms", args.max_p95_latency_ms),
                ("check_malformed", False if args.no_malformed_check else None),
            )
            if value is not None
        }
        settings = replace(settings, **overrides)
        package = read_json(args.build_dir / MODEL_PACKAGE_FILE)
        deployed = read_json(args.build_dir / deploy_result_file("staging"))
        hosting_path = args.build_dir / hosting_file("staging")
        hosting = Hosting.from_json(read_json(hosting_path)) if hosting_path.exists() else Hosting()
        endpoint_name = args.endpoint_name or deployed["endpoint_name"]
        s3 = boto3.client("s3", region_name=project.region)
        runtime = boto3.client(
            "sagemaker-runtime", region_name=project.region, config=Config(retries={"max_attempts": 3})
        )
        invoke = endpoint_invoker(runtime, endpoint_name)
        run_id = env.get("CI_PIPELINE_ID", "") or f"{int(time.time())}"
        runner = None
        if hosting.mode == ASYNC:
            prefix = f"s3://{project.artifact_bucket}/async-inference/staging/input/{run_id}/"
            runner = async_requests(s3, runtime, endpoint_name, prefix, settings.async_timeout_s)
        elif hosting.batch is not None:
            sm = boto3.client("sagemaker", region_name=project.region)
            batch, job = hosting.batch, transform_job_name(project.id, "staging", f"test-{run_id}")
            endpoint_name = f"transform job {job} of model {deployed['model_name']}"

            def transform(input_uri: str) -> TransformResult:
                return run_transform(sm, deployed["model_name"], job, input_uri, batch, project.tags())

            runner = batch_requests(s3, transform, f"{batch.output_s3_prefix}/{job}-input/")
        passed = run_staging_test(
            s3, invoke, package, endpoint_name, settings, args.junit, mode=hosting.mode, run_requests=runner
        )
        record_outcome(args.build_dir, package, endpoint_name, passed)
        if not passed:
            print("ERROR: the staging endpoint failed its test; production is not deployed", flush=True)
        return 0 if passed else 1

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
