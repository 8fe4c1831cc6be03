"""Local Lambda runtime: runs a function's PACKAGED zip (as stored in moto) in a subprocess.

Reproduces: the function configuration moto stores (handler, environment, timeout, memory) is what runs;
the code is the zip object the function was created from in (moto) S3, checked against the function's
CodeSha256 and unpacked once per zip into a cache; the handler runs in a fresh `python -I -S` process
whose import path holds only the unpacked zip and the packages the managed Python runtime provides
(boto3, botocore, s3transfer, jmespath, dateutil, six, urllib3) — so a dependency missing from the zip
fails here as it would in AWS (`Runtime.ImportModuleError`); a context object with the real attribute
names; the Lambda error shape (`errorType`, `errorMessage`, `stackTrace`), `Runtime.*` errors for a bad
handler or an unserialisable result, and "Task timed out after N.NN seconds" (the process is killed).
Like Lambda, the code runs with temporary credentials of the function's execution role (when an STS
client is given: AssumeRole in moto), so each AWS call it makes is attributed to that role and the
sandbox's IAM evaluation can judge it. Logs go to one file per invocation with START/END/REPORT lines.

Leaves out: the interpreter version and architecture (the host's Python runs the code, not
python3.13/arm64), layers, memory limits, a read-only task root, /tmp limits, concurrency and warm
starts (every invoke is a cold start), retries of asynchronous invokes, VPC networking.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .exceptions import FunctionCodeError, SandboxError

# What the managed Python runtime puts on sys.path besides the function's own code.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
FAKE_ACCESS_KEY = "testing"  # moto accepts any key; never a real credential

_BOOTSTRAP = r"""
import json, sys, time, traceback, importlib
code_dir, runtime_dir, result_file, handler_name, meta = sys.argv[1:6]
meta = json.loads(meta)
sys.path[:] = [code_dir, runtime_dir] + [p for p in sys.path if p not in ("", code_dir)]

class LambdaContext:
    def __init__(self, meta):
        self.function_name = meta["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = meta["function_arn"]
        self.memory_limit_in_mb = str(meta["memory"])
        self.aws_request_id = meta["request_id"]
        self.log_group_name = meta["log_group"]
        self.log_stream_name = meta["log_stream"]
        self.identity = None
        self.client_context = None
        self._deadline = meta["deadline"]
    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.time()) * 1000))

def finish(result):
    with open(result_file, "w") as out:
        json.dump(result, out)

def error(kind, message, tb=None):
    stack = traceback.format_tb(tb) if tb is not None else []
    print("[ERROR] " + kind + ": " + message, file=sys.stderr, flush=True)
    finish({"ok": False, "errorType": kind, "errorMessage": message, "stackTrace": stack})

# Like Lambda's Python runtime: one handler on the root logger writing to the function's log stream,
# so INFO records of loggers the function configures reach the log (as they reach CloudWatch).
import logging
_log_handler = logging.StreamHandler(sys.stdout)
_log_format = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t" + meta["request_id"] + "\t%(message)s"
_log_handler.setFormatter(logging.Formatter(_log_format, "%Y-%m-%dT%H:%M:%S"))
logging.getLogger().addHandler(_log_handler)

module_name, _, function_name = handler_name.rpartition(".")
if not module_name or not function_name:
    error("Runtime.MalformedHandlerName", "Bad handler '" + handler_name + "': not enough values to unpack")
    sys.exit(0)
try:
    module = importlib.import_module(module_name)
except Exception as exc:
    error("Runtime.ImportModuleError", "Unable to import module '" + module_name + "': " + str(exc))
    sys.exit(0)
handler = getattr(module, function_name, None)
if handler is None:
    error("Runtime.HandlerNotFound",
          "Handler '" + function_name + "' missing on module '" + module_name + "'")
    sys.exit(0)
event = json.loads(sys.stdin.read())
try:
    value = handler(event, LambdaContext(meta))
except Exception as exc:
    error(type(exc).__name__, str(exc), exc.__traceback__)
    sys.exit(0)
try:
    finish({"ok": True, "payload": value})
except (TypeError, ValueError) as exc:
    error("Runtime.MarshalError", "Unable to marshal response: " + str(exc))
"""


@dataclass(frozen=True)
class FunctionConfig:
    """The parts of a Lambda function's configuration the runner uses, as moto reports them."""

    name: str
    arn: str
    handler: str
    runtime: str
    timeout: int
    memory: int
    environment: Mapping[str, str]
    code_sha256: str  # base64 of the zip's SHA-256, as Lambda reports it
    code_key: str  # S3 key from the function's code location
    role: str = ""


@dataclass(frozen=True)
class Invocation:
    """What one invoke returned: the JSON payload, or the Lambda error fields."""

    function_name: str
    request_id: str
    payload: Any = None
    error_type: str | None = None
    error_message: str | None = None
    stack_trace: tuple[str, ...] = ()
    duration: float = 0.0
    log_file: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def raise_for_error(self) -> Any:
        """The payload, or a `LambdaInvocationError` naming the function, the error and the log file."""
        if self.error_type is not None:
            raise LambdaInvocationError(self)
        return self.payload


class LambdaInvocationError(SandboxError):
    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation
        super().__init__(
            f"Lambda {invocation.function_name} failed: {invocation.error_type}: "
            f"{invocation.error_message} (log: {invocation.log_file})"
        )


def moto_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """The AWS variables a local process needs to talk only to moto (fake keys, endpoint, region)."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_ACCESS_KEY,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }


def function_config(lambda_client: Any, name_or_arn: str) -> FunctionConfig:
    """Read a function's configuration from (moto's) Lambda API."""
    try:
        response = lambda_client.get_function(FunctionName=name_or_arn)
    except lambda_client.exceptions.ResourceNotFoundException as exc:
        raise FunctionCodeError(
            f"Lambda function {name_or_arn} does not exist; create the stack that defines it first"
        ) from exc
    conf = response["Configuration"]
    location = response.get("Code", {}).get("Location", "")
    key = urlparse(location).path.lstrip("/")
    if not key:
        raise FunctionCodeError(
            f"Lambda function {conf['FunctionName']} has no S3 code location; the sandbox runs only "
            "functions created from a zip in S3 (Code.S3Bucket/S3Key), as bootstrap uploads them"
        )
    return FunctionConfig(
        name=conf["FunctionName"],
        arn=conf["FunctionArn"],
        handler=conf["Handler"],
        runtime=conf.get("Runtime", ""),
        timeout=int(conf.get("Timeout", 3)),
        memory=int(conf.get("MemorySize", 128)),
        environment=dict(conf.get("Environment", {}).get("Variables", {})),
        code_sha256=conf["CodeSha256"],
        code_key=key,
        role=str(conf.get("Role", "")),
    )


def lambda_sha256(data: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def fetch_code(s3_client: Any, config: FunctionConfig, buckets: tuple[str, ...] = ()) -> bytes:
    """The zip the function was created from: the object at its code key whose SHA-256 matches.

    moto's code location keeps the key but not the bucket, so the given `buckets` (the bundle bucket)
    are tried first, then every bucket; the digest check proves it is the very zip that was deployed.
    """
    names = list(buckets) + [b["Name"] for b in s3_client.list_buckets().get("Buckets", [])]
    seen: set[str] = set()
    for bucket in names:
        if bucket in seen:
            continue
        seen.add(bucket)
        try:
            body = s3_client.get_object(Bucket=bucket, Key=config.code_key)["Body"].read()
        except s3_client.exceptions.NoSuchKey:
            continue
        except s3_client.exceptions.NoSuchBucket:
            continue
        if lambda_sha256(body) == config.code_sha256:
            return bytes(body)
    raise FunctionCodeError(
        f"the code of Lambda {config.name} (s3 key {config.code_key}, CodeSha256 {config.code_sha256}) is "
        "not in any bucket; was the bundle uploaded and the stack created from it?"
    )


def unpack(data: bytes, cache_dir: Path) -> Path:
    """Unpack a zip once into `cache_dir/<sha256>` and return that directory."""
    digest = hashlib.sha256(data).hexdigest()
    target = cache_dir / digest
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=cache_dir))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(staging)
        try:
            staging.rename(target)
        except OSError:  # another invoke unpacked the same zip first
            shutil.rmtree(staging, ignore_errors=True)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FunctionCodeError(f"the function code is not a valid zip: {exc}") from exc
    return target


def runtime_dir(cache_dir: Path) -> Path:
    """A directory that exposes only the managed runtime's packages (symlinks into this venv)."""
    target = cache_dir / "runtime"
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".runtime-", dir=cache_dir))
    for package in RUNTIME_PACKAGES:
        spec = find_spec(package)
        if spec is None or spec.origin is None:
            raise SandboxError(f"{package} is not installed in {sys.prefix}; run `make venv`")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (staging / source.name).symlink_to(source)
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass
class LambdaRunner:
    """Invokes Lambda functions defined in moto by running their packaged code locally."""

    lambda_client: Any
    s3_client: Any
    work_dir: Path
    aws_env: Mapping[str, str]
    extra_env: Mapping[str, str] = field(default_factory=dict)
    code_buckets: tuple[str, ...] = ()
    python: str = sys.executable
    sts_client: Any = None  # given: the code runs with its role's credentials, as in Lambda

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def prepare(self, name_or_arn: str) -> tuple[FunctionConfig, Path]:
        """The function's configuration and its unpacked code directory."""
        config = function_config(self.lambda_client, name_or_arn)
        code = fetch_code(self.s3_client, config, self.code_buckets)
        return config, unpack(code, self.work_dir / "code")

    def invoke(
        self, name_or_arn: str, event: Any, *, extra_env: Mapping[str, str] | None = None
    ) -> Invocation:
        """Run the handler once with `event`; never raises for errors of the function itself."""
        config, code_dir = self.prepare(name_or_arn)
        request_id = str(uuid.uuid4())
        log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        env = self._environment(config, code_dir, log_stream, extra_env or {})
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{config.name}-{time.strftime('%H%M%S')}-{request_id[:8]}.log"
        result_file = self.log_dir / f".{request_id}.result.json"
        started = time.time()
        meta = {
            "function_name": config.name,
            "function_arn": config.arn,
            "memory": config.memory,
            "request_id": request_id,
            "log_group": f"/aws/lambda/{config.name}",
            "log_stream": log_stream,
            "deadline": started + config.timeout,
        }
        command = [
            self.python,
            "-I",
            "-S",
            "-c",
            _BOOTSTRAP,
            str(code_dir),
            str(runtime_dir(self.work_dir / "code")),
            str(result_file),
            config.handler,
            json.dumps(meta),
        ]
        with log_file.open("w") as log:
            log.write(f"START RequestId: {request_id} Version: $LATEST\n")
            log.flush()
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=code_dir,
                start_new_session=True,
            )
            timed_out = False
            try:
                process.communicate(json.dumps(event).encode(), timeout=config.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            duration = time.time() - started
            invocation = self._result(config, request_id, result_file, process.returncode, timed_out)
            invocation = Invocation(**{**invocation.__dict__, "duration": duration, "log_file": log_file})
            if timed_out:
                log.write(f"{invocation.error_message}\n")
            log.write(f"END RequestId: {request_id}\n")
            log.write(
                f"REPORT RequestId: {request_id}\tDuration: {duration * 1000:.2f} ms\t"
                f"Memory Size: {config.memory} MB\n"
            )
        result_file.unlink(missing_ok=True)
        return invocation

    def _environment(
        self, config: FunctionConfig, code_dir: Path, log_stream: str, extra: Mapping[str, str]
    ) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": config.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": config.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        }
        env.update(config.environment)
        env.update(self.extra_env)
        env.update(extra)
        env.update(self.aws_env)  # reserved in Lambda: the function cannot override them
        env.update(self._role_credentials(config))
        return env

    def _role_credentials(self, config: FunctionConfig) -> dict[str, str]:
        if self.sts_client is None or not config.role:
            return {}
        creds = self.sts_client.assume_role(RoleArn=config.role, RoleSessionName=config.name[:64])[
            "Credentials"
        ]
        return {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        }

    @staticmethod
    def _result(
        config: FunctionConfig, request_id: str, result_file: Path, returncode: int | None, timed_out: bool
    ) -> Invocation:
        if timed_out:
            return Invocation(
                config.name,
                request_id,
                error_type="Sandbox.Timedout",
                error_message=f"Task timed out after {config.timeout:.2f} seconds",
            )
        if not result_file.exists():
            return Invocation(
                config.name,
                request_id,
                error_type="Runtime.ExitError",
                error_message=f"RequestId: {request_id} Error: Runtime exited with error: exit status "
                f"{returncode}",
            )
        result = json.loads(result_file.read_text())
        if result["ok"]:
            return Invocation(config.name, request_id, payload=result["payload"])
        return Invocation(
            config.name,
            request_id,
            error_type=result["errorType"],
            error_message=result["errorMessage"],
            stack_trace=tuple(result.get("stackTrace", ())),
        )
