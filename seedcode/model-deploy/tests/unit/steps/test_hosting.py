"""Each stage's Hosting section is parsed once into a frozen dataclass, with readable errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from steps.common import StepError
from steps.hosting import Hosting, parse_hosting

BUCKET = "sagemaker-project-p-abc123xyz"


def parse(raw: Any, parameters: dict[str, Any] | None = None, stage: str = "staging") -> Hosting:
    return parse_hosting(raw, parameters or {}, stage, BUCKET, f"{stage}-config.json")


def test_no_section_is_realtime_and_the_result_is_frozen():
    hosting = parse(None)
    assert hosting == Hosting() and hosting.mode == "realtime" and hosting.has_endpoint
    assert hosting.template_parameters() == {"HostingMode": "realtime"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        hosting.mode = "batch"  # type: ignore[misc]


def test_serverless_takes_memory_and_concurrency_and_refuses_instances():
    hosting = parse({"Mode": "serverless", "MemorySizeInMB": 3072, "MaxConcurrency": 10})
    assert hosting.template_parameters() == {
        "HostingMode": "serverless",
        "ServerlessMemorySizeInMB": "3072",
        "ServerlessMaxConcurrency": "10",
    }
    with pytest.raises(StepError, match="serverless stage has no instances: remove EndpointInstanceCount"):
        parse({"Mode": "serverless"}, {"EndpointInstanceCount": 2})
    with pytest.raises(StepError, match="MemorySizeInMB must be one of 1024, 2048"):
        parse({"Mode": "serverless", "MemorySizeInMB": 1500})
    with pytest.raises(StepError, match="MaxConcurrency must be a whole number from 1 to 200"):
        parse({"Mode": "serverless", "MaxConcurrency": 500})
    with pytest.raises(StepError, match="do not support DataCapture: set EnableDataCapture false"):
        parse({"Mode": "serverless"}, {"EnableDataCapture": True})


def test_async_defaults_its_paths_under_the_artifacts_bucket_and_checks_topics():
    hosting = parse({"Mode": "async"}, stage="prod")
    assert hosting.asynchronous is not None
    assert hosting.asynchronous.output_s3_uri == f"s3://{BUCKET}/async-inference/prod/output"
    assert hosting.template_parameters()["AsyncScaleToZero"] == "false"
    with pytest.raises(StepError, match="ErrorTopicArn must be an SNS topic ARN"):
        parse({"Mode": "async", "ErrorTopicArn": "my-topic"})
    with pytest.raises(StepError, match="S3OutputPath must be an S3 URI"):
        parse({"Mode": "async", "S3OutputPath": "/tmp/out"})
    with pytest.raises(StepError, match="ScaleToZero needs autoscaling"):
        parse({"Mode": "async", "ScaleToZero": True})
    scaled = parse({"Mode": "async", "ScaleToZero": True}, {"EnableAutoScaling": True})
    assert scaled.template_parameters()["AsyncScaleToZero"] == "true"


def test_batch_needs_an_input_prefix_in_production_and_no_endpoint_settings():
    staging = parse({"Mode": "batch"})
    assert not staging.has_endpoint and staging.batch is not None
    assert staging.batch.output_s3_prefix == f"s3://{BUCKET}/batch-transform/staging"
    with pytest.raises(StepError, match="InputS3Uri must name the S3 prefix"):
        parse({"Mode": "batch"}, stage="prod")
    with pytest.raises(StepError, match="batch stage has no endpoint: remove EnableAutoScaling"):
        parse({"Mode": "batch", "InputS3Uri": "s3://data/in/"}, {"EnableAutoScaling": True}, stage="prod")


def test_unknown_modes_and_settings_are_named():
    with pytest.raises(
        StepError, match="Hosting.Mode 'edge' is not one of realtime, serverless, async, batch"
    ):
        parse({"Mode": "edge"})
    with pytest.raises(StepError, match="Hosting.MemorySizeInMB: not settings of Mode async"):
        parse({"Mode": "async", "MemorySizeInMB": 2048})


def test_the_parsed_section_round_trips_through_the_build_artifact():
    hosting = parse({"Mode": "batch", "InputS3Uri": "s3://data/in/", "InstanceCount": 2}, stage="prod")
    assert Hosting.from_json(hosting.to_json()) == hosting


def test_production_defaults_to_a_canary_and_guardrails_need_realtime():
    from steps.hosting import parse_rollout

    realtime = parse(None, stage="prod")
    assert parse_rollout(None, realtime, "prod", "prod-config.json").strategy == "canary"
    assert parse_rollout(None, realtime, "staging", "staging-config.json").strategy == "none"
    linear = parse_rollout({"Strategy": "linear", "StepPercent": 25}, realtime, "prod", "prod-config.json")
    assert linear.template_parameters()["RolloutStepPercent"] == "25"
    assert linear.template_parameters()["RollbackModelLatencyMicroseconds"] == "1000000"
    serverless = parse({"Mode": "serverless"}, stage="prod")
    assert parse_rollout(None, serverless, "prod", "prod-config.json").strategy == "none"
    with pytest.raises(StepError, match="Rollout.Strategy canary needs Hosting.Mode realtime"):
        parse_rollout({"Strategy": "canary"}, serverless, "prod", "prod-config.json")
    with pytest.raises(StepError, match="Rollout.Strategy 'blue' is not one of"):
        parse_rollout({"Strategy": "blue"}, realtime, "prod", "prod-config.json")
    with pytest.raises(StepError, match="Rollout.Canary: unknown"):
        parse_rollout({"Strategy": "canary", "Canary": 5}, realtime, "prod", "prod-config.json")
