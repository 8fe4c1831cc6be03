"""Both Lambda handlers against the moto server (S3, Secrets Manager) and the GitLab stand-in.

The Lambdas reach the stand-in over HTTPS with a private CA, through the product's own CA-bundle
setting (GitLabCaBundleS3Uri / GITLAB_CA_BUNDLE_S3_URI), as a self-managed GitLab would be reached.
CloudFormation's side is crhelper's response sender, patched to capture the exact body it would PUT.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from crhelper.resource_helper import CfnResource
from gitlab import Gitlab
from mlops_common import ca_bundle, secrets

from scripts.gitlab_standin.server import Standin
from scripts.gitlab_standin.testing import client, standin
from scripts.sandbox.tls import LocalCA, TlsTerminator
from tests.unit.lambdas.helpers import BUILD_FILES, DEPLOY_FILES, FakeContext, load_event, make_zip

TOKEN_SECRET = "gitlab-mlops-platform/gitlab-token"
KEYS_SECRET = "gitlab-mlops/p-abc123def456/ci-{duty}-access-key"
TRIGGER_SECRET = "gitlab-mlops/p-abc123def456/deploy-trigger"
BUCKET = "gitlab-mlops-bundle-123456789012-us-east-1"
CA_KEY = "gitlab/ca-bundle.pem"
CA_URI = f"s3://{BUCKET}/{CA_KEY}"


@pytest.fixture(scope="session")
def local_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def gitlab_server(local_ca: LocalCA) -> Iterator[Standin]:
    """A fresh stand-in with the group ml-team behind HTTPS (no runner: pipelines stay 'created')."""
    with standin() as server:
        front = TlsTerminator(local_ca.issue("gitlab"), server.port).start()
        server.set_external_url(front.url)
        try:
            yield server
        finally:
            front.stop()


@dataclass
class World:
    """The stand-in, AWS (moto) and helpers to build events and read GitLab state."""

    gitlab: Standin
    aws_client: Any
    token_arn: str
    keys_arns: dict[str, str]
    trigger_arn: str
    answers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def gitlab_url(self) -> str:
        """The https URL the Lambdas use; tests inspect state directly over `gitlab.url`."""
        assert self.gitlab.external_url is not None
        return self.gitlab.external_url

    @property
    def gl(self) -> Gitlab:
        return client(self.gitlab)

    def event(self, name: str, **props: str) -> dict[str, Any]:
        event = copy.deepcopy(load_event(name))
        for key in ("ResourceProperties", "OldResourceProperties"):
            if key in event:
                event[key].update(
                    GitLabUrl=self.gitlab_url,
                    GitLabTokenSecretArn=self.token_arn,
                    GitLabCaBundleS3Uri=CA_URI,
                    DeployTriggerSecretArn=self.trigger_arn,
                )
        if props.get("CiAuthMode") == "access-keys":
            for duty, arn in self.keys_arns.items():
                props.setdefault(f"Ci{duty.capitalize()}AccessKeySecretArn", arn)
                props.setdefault(f"Ci{duty.capitalize()}RoleArn", "")
            props.setdefault("CiAccessKeySerial", "1")
        event["ResourceProperties"].update(props)
        if "PhysicalResourceId" in event:
            event["PhysicalResourceId"] = event["PhysicalResourceId"].replace(
                "gitlab.example.com", self.gitlab_url.removeprefix("https://")
            )
        return event


@pytest.fixture
def world(gitlab_server: Standin, aws_client: Any, local_ca: LocalCA) -> World:
    props = load_event("cfn_create")["ResourceProperties"]
    s3 = aws_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=CA_KEY, Body=Path(local_ca.ca_file).read_bytes())
    s3.put_object(
        Bucket=BUCKET,
        Key=props["ModelBuildSeedKey"],
        Body=make_zip(BUILD_FILES, frozenset({"scripts/run.sh"})),
    )
    s3.put_object(Bucket=BUCKET, Key=props["ModelDeploySeedKey"], Body=make_zip(DEPLOY_FILES))
    sm = aws_client("secretsmanager")
    assert gitlab_server.external_url is not None
    token_arn = sm.create_secret(
        Name=TOKEN_SECRET,
        SecretString=json.dumps({"token": gitlab_server.token}),
        Tags=[{"Key": "gitlab-mlops:gitlab-url", "Value": gitlab_server.external_url}],
    )["ARN"]
    keys_arns = {}
    for duty in ("build", "staging", "prod"):
        keys = {
            "AccessKeyId": f"AKIA{duty.upper():X<16}",
            "SecretAccessKey": f"wJalrXUtnFEMI/K7MDENG/{duty}/bPxRfiCYEXAMPLEKEY",
        }
        keys_arns[duty] = sm.create_secret(Name=KEYS_SECRET.format(duty=duty), SecretString=json.dumps(keys))[
            "ARN"
        ]
    trigger_arn = sm.create_secret(
        Name=TRIGGER_SECRET, SecretString=json.dumps({"state": "pending", "placeholder": "Abc123"})
    )["ARN"]
    secrets.clear_cache()
    ca_bundle.clear_cache()
    return World(gitlab_server, aws_client, token_arn, keys_arns, trigger_arn)


@pytest.fixture
def checkin(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Invoke the custom resource handler; returns the body CloudFormation would receive."""
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    module = importlib.import_module("seedcode_checkin.handler")
    monkeypatch.setattr(module, "CLIENTS", module.build_clients())  # bound to moto via AWS_ENDPOINT_URL
    monkeypatch.setattr(module.helper, "_sleep_on_delete", 0)
    original = CfnResource._send  # type: ignore[attr-defined]  # crhelper's private sender, captured
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

    def invoke(
        event: dict[str, Any], deploy_project_id: str, seconds: float = 30, prod_stack: str = ""
    ) -> dict[str, Any]:
        monkeypatch.setenv("PROD_DEPLOY_STACK_NAME", prod_stack)
        monkeypatch.setenv("GITLAB_URL", world.gitlab_url)
        monkeypatch.setenv("TRIGGER_TOKEN_SECRET_ARN", world.trigger_arn)
        monkeypatch.setenv("GITLAB_CA_BUNDLE_S3_URI", CA_URI)
        monkeypatch.setenv("DEPLOY_PROJECT_ID", deploy_project_id)
        monkeypatch.setenv("DEPLOY_REF", "main")
        monkeypatch.setenv("MODEL_PACKAGE_GROUP_NAME", "abalone-p-abc123def456")
        module.reset()
        try:
            result: dict[str, Any] = module.handler(event, FakeContext(seconds))
        finally:
            module.reset()
        return result

    return invoke
