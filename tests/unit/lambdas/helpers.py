"""Helpers shared by the Lambda unit and integration tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

EVENTS = Path(__file__).resolve().parents[2] / "fixtures" / "events"
GITLAB = "https://gitlab.example.com"
API = f"{GITLAB}/api/v4"
TOKEN = "glpat-UnitTestToken-0123456789"


def load_event(name: str) -> dict[str, Any]:
    """One JSON fixture per event scenario, from tests/fixtures/events/."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    assert isinstance(event, dict), f"{name}.json must hold a JSON object"
    return event


def sent_json(request: requests.PreparedRequest) -> Any:
    """The JSON body of a request `responses` recorded (None when it had none)."""
    body = request.body
    assert body is None or isinstance(body, bytes | str), f"unexpected body {type(body).__name__}"
    return json.loads(body or b"null")


def sent_url(request: requests.PreparedRequest) -> str:
    assert request.url is not None
    return request.url


def sent_timeout(request: requests.PreparedRequest) -> float:
    """The timeout the request was sent with (`responses` records the send's keyword arguments)."""
    kwargs: dict[str, Any] = request.req_kwargs  # type: ignore[attr-defined]  # set by responses only
    return float(kwargs["timeout"])


class FakeContext:
    """The part of the Lambda context the handlers and crhelper use."""

    function_name = "checkin"
    aws_request_id = "req-1"

    def __init__(self, seconds: float = 60.0) -> None:
        self._seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self._seconds * 1000)


def project_json(
    pid: int, path: str, topics: list[str] | None = None, archived: bool = False
) -> dict[str, Any]:
    name = path.rsplit("/", 1)[-1]
    return {
        "id": pid,
        "name": name,
        "path": name,
        "path_with_namespace": path,
        "http_url_to_repo": f"{GITLAB}/{path}.git",
        "web_url": f"{GITLAB}/{path}",
        "description": "",
        "default_branch": None,
        "archived": archived,
        "topics": topics or [],
    }


def make_zip(files: dict[str, bytes | str], executable: frozenset[str] = frozenset()) -> bytes:
    """A seed zip with files at its root, as scripts/admin/package.py builds them."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if name in executable else 0o100644) << 16
            archive.writestr(info, content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


# A PNG header and bytes that are not UTF-8: must round-trip as base64.
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01"
BUILD_FILES: dict[str, bytes | str] = {
    ".gitlab-ci.yml": "stages: [build]\n",
    "pipelines/run.py": "print('hi')\n",
    "img/logo.png": BINARY,
    "scripts/run.sh": "#!/bin/sh\necho run\n",
}
# The deploy CI names each pipeline from the variable the trigger passes (its idempotency key).
DEPLOY_FILES: dict[str, bytes | str] = {
    ".gitlab-ci.yml": "workflow:\n  name: $DEPLOY_PIPELINE_NAME\nstages: [deploy]\n",
    "deploy.py": "x = 1\n",
}


class FakeSecrets:
    """Secrets Manager double: SecretString and tags by id, counting value reads and writes."""

    def __init__(self, values: dict[str, str], tags: dict[str, dict[str, str]] | None = None) -> None:
        self.values, self.tags, self.calls, self.puts = values, tags or {}, 0, 0

    def _missing(self, secret_id: str, operation: str) -> None:
        from botocore.exceptions import ClientError

        if secret_id not in self.values:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "m"}}, operation)

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls += 1
        self._missing(SecretId, "GetSecretValue")
        return {"SecretString": self.values[SecretId]}

    def describe_secret(self, SecretId: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self._missing(SecretId, "DescribeSecret")
        return {
            "ARN": SecretId,
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.get(SecretId, {}).items()],
        }

    def put_secret_value(self, SecretId: str, SecretString: str) -> dict[str, Any]:  # noqa: N803
        self._missing(SecretId, "PutSecretValue")
        self.puts += 1
        self.values[SecretId] = SecretString
        return {"ARN": SecretId}


class FakeS3:
    """S3 double serving objects by key."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        import io

        from botocore.exceptions import ClientError

        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "m"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}


class FakeCloudFormation:
    """CloudFormation double: named stacks with a status; a deleted stack is gone at once."""

    def __init__(self, stacks: dict[str, str] | None = None) -> None:
        self.stacks = dict(stacks or {})
        self.deleted: list[str] = []

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        from botocore.exceptions import ClientError

        name = StackName.split("/")[1] if StackName.startswith("arn:") else StackName
        if name not in self.stacks:
            raise ClientError({"Error": {"Code": "ValidationError", "Message": "m"}}, "DescribeStacks")
        stack_id = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/1"
        return {"Stacks": [{"StackName": name, "StackId": stack_id, "StackStatus": self.stacks[name]}]}

    def delete_stack(self, StackName: str) -> None:  # noqa: N803 - boto3's names
        name = StackName.split("/")[1]
        self.deleted.append(name)
        del self.stacks[name]

    def describe_stack_events(self, StackName: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"StackEvents": []}
