"""Both Lambda handlers against the moto server (S3, Secrets Manager) and the GitLab stand-in.

CloudFormation's side is crhelper's response sender, patched to capture the exact body it would PUT.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gitlab
import pytest
from crhelper.resource_helper import CfnResource
from mlops_common import ca_bundle, secrets

from scripts.gitlab_standin.server import Standin
from scripts.gitlab_standin.testing import client, standin
from tests.unit.lambdas.helpers import BUILD_FILES, DEPLOY_FILES, FakeContext, load_event, make_zip

TOKEN_SECRET = "gitlab-token"
KEYS_SECRET = "ci-access-keys"
BUCKET = "sagemaker-mlops-bundle-123456789012"


@pytest.fixture
def gitlab_server() -> Iterator[Standin]:
    """A fresh stand-in with the group ml-team (no pipeline runner: pipelines stay 'created')."""
    with standin() as server:
        yield server


@dataclass
class World:
    """The stand-in, AWS (moto) and helpers to build events and read GitLab state."""

    gitlab: Standin
    aws_client: Any
    token_arn: str
    keys_arn: str
    answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gl(self) -> gitlab.Gitlab:
        return client(self.gitlab)

    def event(self, name: str, **props: str) -> dict[str, Any]:
        event = copy.deepcopy(load_event(name))
        for key in ("ResourceProperties", "OldResourceProperties"):
            if key in event:
                event[key].update(GitLabUrl=self.gitlab.url, GitLabTokenSecretArn=self.token_arn)
        event["ResourceProperties"].update(props)
        if "PhysicalResourceId" in event:
            event["PhysicalResourceId"] = event["PhysicalResourceId"].replace(
                "gitlab.example.com", self.gitlab.url.removeprefix("http://")
            )
        return event


@pytest.fixture
def world(gitlab_server: Standin, aws_client: Any) -> World:
    props = load_event("cfn_create")["ResourceProperties"]
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(
        Bucket=BUCKET,
        Key=props["ModelBuildSeedKey"],
        Body=make_zip(BUILD_FILES, frozenset({"scripts/run.sh"})),
    )
    s3.put_object(Bucket=BUCKET, Key=props["ModelDeploySeedKey"], Body=make_zip(DEPLOY_FILES))
    sm = aws_client("secretsmanager")
    token_arn = sm.create_secret(Name=TOKEN_SECRET, SecretString=json.dumps({"token": gitlab_server.token}))[
        "ARN"
    ]
    keys = {
        "AccessKeyId": "AKIAEXAMPLE1234567",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
    keys_arn = sm.create_secret(Name=KEYS_SECRET, SecretString=json.dumps(keys))["ARN"]
    secrets.clear_cache()
    ca_bundle.clear_cache()
    return World(gitlab_server, aws_client, token_arn, keys_arn)


@pytest.fixture
def checkin(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Invoke the custom resource handler; returns the body CloudFormation would receive."""
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    module = importlib.import_module("seedcode_checkin.handler")
    monkeypatch.setattr(module, "CLIENTS", module.build_clients())  # bound to moto via AWS_ENDPOINT_URL
    monkeypatch.setattr(module.helper, "_sleep_on_delete", 0)
    original = CfnResource._send
    sent: list[dict[str, Any]] = []

    def send(status: str | None = None, reason: str = "", send_response: Any = None) -> None:
        original(module.helper, status, reason, send_response=lambda url, body, verify: sent.append(body))

    monkeypatch.setattr(module.helper, "_send", send)

    def invoke(event: dict[str, Any], seconds: float = 120) -> dict[str, Any]:
        module.handler(event, FakeContext(seconds))
        assert len(sent) == 1, f"expected exactly one answer, got {sent}"
        answer = sent.pop()
        world.answers.append(answer)
        return answer

    return invoke


@pytest.fixture
def trigger(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Invoke the approval trigger with its environment pointing at the stand-in and moto."""
    module = importlib.import_module("pipeline_trigger.handler")

    def invoke(event: dict[str, Any], deploy_project_id: str) -> dict[str, Any]:
        monkeypatch.setenv("GITLAB_URL", world.gitlab.url)
        monkeypatch.setenv("GITLAB_TOKEN_SECRET_ARN", world.token_arn)
        monkeypatch.setenv("GITLAB_CA_BUNDLE_S3_URI", "")
        monkeypatch.setenv("DEPLOY_PROJECT_ID", deploy_project_id)
        monkeypatch.setenv("DEPLOY_REF", "main")
        monkeypatch.setenv("MODEL_PACKAGE_GROUP_NAME", "abalone-p-abc123def456")
        module.reset()
        try:
            result: dict[str, Any] = module.handler(event, FakeContext(30))
        finally:
            module.reset()
        return result

    return invoke
