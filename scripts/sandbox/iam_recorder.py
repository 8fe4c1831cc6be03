"""Record every AWS call the sandbox serves, with the principal that made it, for offline IAM judgement.

moto evaluates no IAM policy. It does pass every request through one authorization hook
(`ActionAuthenticatorMixin._authenticate_and_authorize_action`, which it skips unless its IAM
simulation is on); the recorder wraps that hook in the moto server's process and writes, per request,
the caller's access key, the service and operation, the S3 resource ARN moto computes, and the request
parameters, to a JSON-lines file. The key is resolved to the principal that holds it: a role (keys
from AssumeRole / AssumeRoleWithWebIdentity, as Lambda and GitLab CI get them) or an IAM user.

`scripts/iam/requests.py` turns each record into the IAM actions and resource ARNs AWS would
authorize, and the e2e test (and `demo` at the end of a run) judges them with `scripts/iam`.

The local sagemaker-runtime (inference.py) records its InvokeEndpoint calls the same way. Leaves out
what services do on their own behalf (CloudFormation creating a stack's resources with the caller's
credentials is judged from the templates' handler permissions instead).
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

_lock = threading.Lock()
_installed: dict[str, Any] = {}


@dataclass(frozen=True)
class Call:
    """One AWS request as the sandbox served it."""

    service: str  # signing name: s3, sagemaker, sts, ...
    operation: str  # API operation (S3: the IAM action moto maps the request to)
    principal: str  # role or user ARN, "" when the key is the sandbox's own
    s3_resource: str = ""  # moto's S3 ARN for S3 requests
    params: Mapping[str, Any] = field(default_factory=dict)
    claims: Mapping[str, Any] = field(default_factory=dict)  # AssumeRoleWithWebIdentity token claims
    account: str = "123456789012"
    region: str = "us-east-1"


def access_key_of(headers: Any) -> tuple[str, str, str]:
    """(access key id, region, service) from a SigV4 Authorization header."""
    auth = str(headers.get("Authorization") or "")
    if "Credential=" not in auth:
        return "", "", ""
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    return (scope[0], scope[2], scope[3]) if len(scope) >= 4 else (scope[0], "", "")


def principal_of(access_key: str, account: str) -> str:
    """The role or user ARN holding `access_key` in moto ("" for keys moto did not issue)."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account]["aws"]
    key = backend.access_keys.get(access_key)
    if key is None:
        return ""
    if key.role_arn:
        return str(key.role_arn)
    if key.user_name:
        user = backend.users.get(key.user_name)
        return str(user.arn) if user is not None else ""
    return ""


def _claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _params(response: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, values in (getattr(response, "querystring", None) or {}).items():
        params[key] = values[0] if isinstance(values, list) and len(values) == 1 else values
    body = getattr(response, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip().startswith("{"):
        try:
            loaded = json.loads(body)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            params.update(loaded)
    elif isinstance(body, str) and "=" in body and not params:
        params.update({k: v[0] for k, v in parse_qs(body).items()})
    uri = getattr(response, "uri", "") or ""
    if uri:
        params.setdefault("__path", str(uri).split("?", 1)[0])
    headers = {str(k).lower() for k in (getattr(response, "headers", None) or {})}
    for key in [k for k in params if k.lower() in headers]:  # S3 mixes request headers into its querystring
        del params[key]
    for secret in ("SecretString", "SecretBinary", "WebIdentityToken", "Password"):
        params.pop(secret, None)
    return params


def install(path: Path) -> None:
    """Start recording into `path` (JSON lines); idempotent per process."""
    from moto.core.authorization import ActionAuthenticatorMixin

    with _lock:
        _installed["path"] = path
        if "original" in _installed:
            return
        original = ActionAuthenticatorMixin._authenticate_and_authorize_action
        _installed["original"] = original

    def recording(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        with contextlib.suppress(Exception):  # recording must never break the emulated service
            _record(self, resource)
        original(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = recording  # type: ignore[method-assign]


def _record(response: Any, resource: str) -> None:
    target = _installed.get("path")
    if target is None:
        return
    key, region, service = access_key_of(response.headers)
    account = str(getattr(response, "current_account", "123456789012"))
    data = getattr(response, "data", None) or {}
    operation = str(data.get("Action") or "") if service == "s3" else ""
    if not operation:
        operation = str(response._get_action())
    params = _params(response)
    claims: dict[str, Any] = {}
    if operation == "AssumeRoleWithWebIdentity":
        token = (getattr(response, "querystring", None) or {}).get("WebIdentityToken", [""])
        claims = _claims(token[0] if isinstance(token, list) else str(token))
    call = Call(
        service=service or str(getattr(response, "service_name", "")),
        operation=operation,
        principal=principal_of(key, account) if key else "",
        s3_resource=resource if service == "s3" else "",
        params=params,
        claims=claims,
        account=account,
        region=region or str(getattr(response, "region", "us-east-1")),
    )
    line = json.dumps(asdict(call), default=str)
    with _lock, Path(target).open("a", encoding="utf-8") as out:
        out.write(line + "\n")


def record_call(path: Path, call: Call) -> None:
    """Append a call served outside moto (the local sagemaker-runtime)."""
    with _lock, path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(call), default=str) + "\n")


def read(path: Path) -> Iterator[Call]:
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            yield Call(**raw)
