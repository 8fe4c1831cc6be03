"""Failures are seen and recoverable: a GitLab outage dead-letters an approval, the template's DLQ alarm
fires, and the re-drive (scripts/admin/redrive.py) starts the deployment once GitLab is back.

Lambda's asynchronous retries and its DLQ are emulated here as Lambda performs them (three attempts, then
the event as the message body); the queue is moto's SQS. moto evaluates no CloudWatch alarm, so the
template's own TriggerDeadLetterAlarm rule (metric, threshold, comparison) is applied to the queue's
depth by scripts/sandbox/alarms.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlops_common.errors import GitLabError

from scripts.admin import redrive
from scripts.sandbox.alarms import sqs_alarm_state
from tests.integration.lambdas.conftest import World
from tests.unit.lambdas.helpers import load_event
from tests.unit.templates.cfn import load

ALARM = load("project.yml")["Resources"]["TriggerDeadLetterAlarm"]["Properties"]
NAME = "deploy abalone-p-abc123def456 v3 (Approved at 2026-11-24T12:00:00Z)"


@pytest.fixture
def deploy_id(world: World, checkin: Any) -> str:
    answer = checkin(world.event("cfn_create"))
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    return str(answer["Data"]["ModelDeployProjectId"])


@pytest.fixture
def queue(world: World) -> tuple[Any, str]:
    sqs = world.aws_client("sqs")
    return sqs, sqs.create_queue(QueueName="gitlab-mlops-p-abc123def456-pipeline-trigger-dlq")["QueueUrl"]


def deliver_like_lambda(trigger: Any, deploy_id: str, event: dict[str, Any], sqs: Any, url: str) -> None:
    """An asynchronous invocation: the first attempt, two retries, then the event to the DLQ."""
    for _ in range(3):
        try:
            trigger(event, deploy_id)
            return
        except GitLabError as exc:
            error = str(exc)
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(event),
        MessageAttributes={"ErrorMessage": {"DataType": "String", "StringValue": error}},
    )


def test_an_outage_fires_the_dlq_alarm_and_the_redrive_starts_the_deployment(
    world: World, trigger: Any, deploy_id: str, queue: tuple[Any, str]
) -> None:
    sqs, url = queue
    assert sqs_alarm_state(ALARM, sqs, url) == "OK"
    world.gitlab.add_fault(r"/api/v4/", 503, count=None)  # GitLab is down
    deliver_like_lambda(trigger, deploy_id, load_event("model_package_approved"), sqs, url)
    assert sqs_alarm_state(ALARM, sqs, url) == "ALARM"

    listed = redrive.receive(sqs, url, visibility=0)
    assert [letter.event["detail"]["ModelPackageVersion"] for letter in listed] == [3]
    assert "failing (HTTP 503)" in listed[0].error

    def invoke(event: Any) -> str | None:
        try:
            trigger(event, deploy_id)
        except GitLabError as exc:
            return str(exc)
        return None

    still_down = redrive.redrive(sqs, url, invoke)  # too early: the message stays
    assert [outcome.startswith("kept: GitLab") for _, outcome in still_down] == [True]
    assert sqs_alarm_state(ALARM, sqs, url) == "ALARM"

    world.gitlab.clear_faults()  # GitLab is back
    assert [outcome for _, outcome in redrive.redrive(sqs, url, invoke, dry_run=True)] == ["would re-drive"]
    assert [outcome for _, outcome in redrive.redrive(sqs, url, invoke)] == ["re-driven"]
    pipelines = world.gl.projects.get(int(deploy_id)).pipelines.list(get_all=True)
    assert [p.name for p in pipelines] == [NAME]  # the deployment started, once
    assert sqs_alarm_state(ALARM, sqs, url) == "OK"
    assert redrive.redrive(sqs, url, invoke) == []  # nothing left


def test_list_prints_each_dead_lettered_approval(
    world: World, queue: tuple[Any, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(load_event("model_package_approved")))
    make = world.aws_client
    clients = {name: make(name) for name in ("sqs", "lambda")}
    monkeypatch.setattr("boto3.client", lambda service, **kw: clients[service])
    assert redrive.main(["list", "--queue-url", url]) == 0
    out = capsys.readouterr().out
    assert "Approved arn:aws:sagemaker:us-east-1:123456789012:model-package/abalone-p-abc123def456/3" in out
    assert out.strip().endswith("1 dead-lettered approval(s)")
    assert len(redrive.receive(sqs, url, visibility=0)) == 1  # listing does not consume
