"""The local Lambda runner runs the deployed zip with the function's configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scripts.sandbox.exceptions import FunctionCodeError
from scripts.sandbox.lambda_runner import LambdaInvocationError, LambdaRunner

ECHO = '''
import os, boto3
def handler(event, context):
    print("handling", event["n"])
    buckets = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    return {
        "event": event,
        "env": {k: os.environ.get(k) for k in ("GREETING", "EXTRA", "AWS_ENDPOINT_URL", "AWS_REGION")},
        "buckets": buckets,
        "context": [context.function_name, context.invoked_function_arn, context.aws_request_id,
                    context.log_stream_name, context.get_remaining_time_in_millis()],
    }
'''


def test_runs_the_deployed_zip_with_its_environment_and_a_context(
    deploy: Callable[..., str], runner: LambdaRunner, sandbox_aws: str
) -> None:
    arn = deploy("echo", {"app.py": ECHO}, env={"GREETING": "hello"}, timeout=7)

    result = runner.invoke("echo", {"n": 41}, extra_env={"EXTRA": "x"})

    payload = result.raise_for_error()
    assert payload["event"] == {"n": 41}
    assert payload["env"] == {
        "GREETING": "hello", "EXTRA": "x", "AWS_ENDPOINT_URL": sandbox_aws, "AWS_REGION": "us-east-1",
    }
    assert "sandbox-test-bundle" in payload["buckets"]  # boto3 from the runtime reached moto
    name, function_arn, request_id, stream, remaining = payload["context"]
    assert (name, function_arn, request_id) == ("echo", arn, result.request_id)
    assert "[$LATEST]" in stream
    assert 0 < remaining <= 7000
    assert result.log_file is not None
    log = result.log_file.read_text()
    assert "handling 41" in log
    assert log.startswith(f"START RequestId: {result.request_id}")
    assert f"END RequestId: {result.request_id}" in log


def test_info_logs_of_a_logger_the_function_configures_reach_its_log_like_cloudwatch(
    deploy: Callable[..., str], runner: LambdaRunner
) -> None:
    code = (
        "import logging\nlog = logging.getLogger('app')\nlog.setLevel(logging.INFO)\n"
        "def handler(event, context):\n    log.info('ignored: %s', event['why'])\n    return 1\n"
    )
    deploy("logs", {"app.py": code})

    result = runner.invoke("logs", {"why": "other group"})

    assert result.log_file is not None
    lines = [ln for ln in result.log_file.read_text().splitlines() if "ignored: other group" in ln]
    assert len(lines) == 1
    assert lines[0].startswith("[INFO]\t") and result.request_id in lines[0]


def test_an_exception_becomes_the_lambda_error_shape(
    deploy: Callable[..., str], runner: LambdaRunner
) -> None:
    code = "def handler(event, context):\n    raise ValueError('bad input: ' + event['x'])\n"
    deploy("fails", {"app.py": code})

    result = runner.invoke("fails", {"x": "42"})

    assert not result.ok
    assert (result.error_type, result.error_message) == ("ValueError", "bad input: 42")
    assert any("app.py" in line for line in result.stack_trace)
    with pytest.raises(LambdaInvocationError, match=r"Lambda fails failed: ValueError: bad input: 42"):
        result.raise_for_error()


def test_a_function_running_past_its_timeout_is_killed(
    deploy: Callable[..., str], runner: LambdaRunner
) -> None:
    deploy("sleepy", {"app.py": "import time\ndef handler(event, context):\n    time.sleep(30)\n"}, timeout=1)

    result = runner.invoke("sleepy", {})

    assert result.error_message == "Task timed out after 1.00 seconds"
    assert result.duration < 5


def test_a_dependency_missing_from_the_zip_fails_even_if_the_host_has_it(
    deploy: Callable[..., str], runner: LambdaRunner
) -> None:
    # crhelper is installed in the test venv, but the runtime only offers what AWS's runtime has.
    deploy("unpacked", {"app.py": "import crhelper\ndef handler(event, context):\n    return 1\n"})

    result = runner.invoke("unpacked", {})

    assert result.error_type == "Runtime.ImportModuleError"
    assert "No module named 'crhelper'" in str(result.error_message)


def test_a_wrong_handler_name_is_reported_like_lambda(
    deploy: Callable[..., str], runner: LambdaRunner
) -> None:
    deploy("misnamed", {"app.py": "def main(event, context):\n    return 1\n"}, handler="app.handler")

    result = runner.invoke("misnamed", {})

    assert result.error_type == "Runtime.HandlerNotFound"


def test_code_replaced_after_deployment_is_not_run(
    deploy: Callable[..., str], runner: LambdaRunner, aws_client: Callable[[str], Any]
) -> None:
    deploy("stale", {"app.py": "def handler(event, context):\n    return 1\n"})
    aws_client("s3").put_object(Bucket="sandbox-test-bundle", Key="bundle/stale.zip", Body=b"other bytes")

    with pytest.raises(FunctionCodeError, match="CodeSha256"):
        runner.invoke("stale", {})
