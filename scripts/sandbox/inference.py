"""Local SageMaker runtime: InvokeEndpoint served by the container the endpoint's model names.

Reproduces: `POST /endpoints/{name}/invocations` as botocore's sagemaker-runtime client sends it (point
`AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` at `InferenceServer.url`); the endpoint → endpoint config (first
production variant) → model → container chain as (moto) SageMaker describes it at the time of the
request, so an endpoint moved to a new config serves the new model at once; a model that names a model
package takes the package's inference container (image, ModelDataUrl, Environment; the model's own
container Environment on top) and the model's EnableNetworkIsolation (moto 5.2 always reports it false,
so it is read from the template of the CloudFormation stack that created the model, when one did:
`network_isolation`); the artifact model.tar.gz from
(moto) S3, extracted as SageMaker extracts it into /opt/ml/model. The container itself runs as a worker
process per endpoint and artifact (xgboost_container.py: algorithm vs script mode, SAGEMAKER_PROGRAM
semantics, the entry point's hooks, content types and status codes, each rule with its source there).
Errors come back in the shapes boto3 raises (sagemaker-runtime API reference, InvokeEndpoint errors):
ValidationError "Endpoint X of account Y not found." (HTTP 400); ModelError (HTTP 424) "Received client
error (4xx) from primary with message ..." or "Received server error (5xx) ..." with OriginalStatusCode
and OriginalMessage when the container answers non-2xx; a container that fails its /ping (on SageMaker,
CreateEndpoint would fail) answers ValidationError naming the health-check failure.

Asynchronous inference (SageMaker API reference, InvokeEndpointAsync; "Asynchronous inference" guide):
`POST /endpoints/{name}/async-invocations` needs the X-Amzn-SageMaker-InputLocation header (an S3 URI;
botocore refuses the call without it) and an endpoint whose config has AsyncInferenceConfig (otherwise
ValidationError); it answers 202 at once with InferenceId in the body and the X-Amzn-SageMaker-
OutputLocation `<S3OutputPath>/<inference id>.out` (and FailureLocation `<S3FailurePath>/<inference
id>-error.out` when a failure path is configured) headers; the request is queued and a worker thread
later reads the input from (moto) S3, invokes the container and writes the answer to the output
location, or the container's error to the failure location.

Batch transform (CreateTransformJob API reference; "Use batch transform" guide), run by `serve_transform
_jobs`, which makes moto's CreateTransformJob report InProgress and hands the job to this server: every
object under TransformInput's S3Prefix is read; SplitType=Line splits it into records at newlines (blank
lines dropped), SplitType None sends the object whole; BatchStrategy MultiRecord packs records into
requests up to MaxPayloadInMB (default 6), SingleRecord (the default) sends one record per request; the
model's answers are written to `<S3OutputPath>/<object key relative to the prefix>.out`, joined with a
newline after each answer for AssembleWith=Line; a non-2xx answer fails the job (status Failed with a
FailureReason naming the object and the container's message); otherwise the job ends Completed.

Leaves out: images other than sagemaker-xgboost, traffic splitting between variants, data capture,
instance counts and latency, endpoint status transitions, CloudWatch metrics and logs, request size
limits (6 MB real-time, 4 MB serverless), the 60 s invocation timeout, serverless cold starts and
concurrency limits, SNS notifications of async results (nothing is published), async request TTLs,
manifest-file transform inputs, DataProcessing filters and transform instance counts (one worker).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

CONTAINER = Path(__file__).resolve().parent / "xgboost_container.py"
XGBOOST_REPOSITORY = "sagemaker-xgboost"
# Host variables a container does not inherit (its environment is the model's).
_HOST_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class InvokeError(Exception):
    """An error answered in the shape botocore parses into a ClientError."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def model_error(message: str, original_status: int = 400) -> InvokeError:
    side = "client" if original_status < 500 else "server"
    return InvokeError(
        424,
        "ModelError",
        f'Received {side} error ({original_status}) from primary with message "{message}".',
        OriginalStatusCode=original_status,
        OriginalMessage=message,
    )


def extract_artifact(archive: bytes, model_dir: Path) -> None:
    """model.tar.gz into the model directory, refusing entries that would land outside it."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(model_dir, filter="data")


def describe_model(sm: Any, cfn: Any | None, config_name: str, name: str) -> dict[str, Any]:
    """The model an endpoint config serves.

    moto's CloudFormation `update_stack` replaces a stack's Model but leaves the new EndpointConfig naming
    the old, deleted one (it does not re-point dependants). AWS would have the config name the new model:
    so when the named model is gone, take the Model resource of the stack that owns the config.
    """
    try:
        return dict(sm.describe_model(ModelName=name))
    except sm.exceptions.ClientError:
        if cfn is None:
            raise
    for stack in cfn.describe_stacks()["Stacks"]:
        resources = cfn.describe_stack_resources(StackName=stack["StackName"])["StackResources"]
        if any(
            r.get("ResourceType") == "AWS::SageMaker::EndpointConfig"
            and r.get("PhysicalResourceId", "").rsplit("/", 1)[-1] == config_name
            for r in resources
        ):
            for r in resources:
                if r.get("ResourceType") == "AWS::SageMaker::Model" and r.get("PhysicalResourceId"):
                    physical = str(r["PhysicalResourceId"])
                    return dict(sm.describe_model(ModelName=physical.rsplit(":model/", 1)[-1]))
    return dict(sm.describe_model(ModelName=name))


def network_isolation(cfn: Any | None, model: dict[str, Any]) -> bool:
    """The model's EnableNetworkIsolation: moto's answer, or its stack template's property (moto drops it)."""
    if model.get("EnableNetworkIsolation") or cfn is None:
        return bool(model.get("EnableNetworkIsolation"))
    from scripts.admin.cfn_yaml import load_template

    for stack in cfn.describe_stacks()["Stacks"]:
        resources = cfn.describe_stack_resources(StackName=stack["StackName"])["StackResources"]
        for resource in resources:
            physical = str(resource.get("PhysicalResourceId", ""))
            if resource.get("ResourceType") == "AWS::SageMaker::Model" and (
                physical.rsplit("/", 1)[-1] == model["ModelName"]
            ):
                template = load_template(cfn.get_template(StackName=stack["StackName"])["TemplateBody"])
                properties = template["Resources"][resource["LogicalResourceId"]].get("Properties", {})
                return str(properties.get("EnableNetworkIsolation", False)).lower() == "true"
    return False


@dataclass(frozen=True)
class Container:
    """What one production variant runs: image, artifact, environment, network isolation."""

    variant: str
    image: str
    model_data_url: str
    environment: dict[str, str]
    network_isolation: bool

    @property
    def key(self) -> str:
        return json.dumps(
            [self.image, self.model_data_url, sorted(self.environment.items()), self.network_isolation]
        )


class Worker:
    """One running container (xgboost_container.py) for one endpoint and artifact."""

    def __init__(self, container: Container, archive: bytes, log: IO[str] | None) -> None:
        self.container = container
        self._dir = tempfile.TemporaryDirectory(prefix="sagemaker-model-")
        model_dir = Path(self._dir.name) / "model"
        model_dir.mkdir()
        extract_artifact(archive, model_dir)
        env = {k: v for k, v in os.environ.items() if k in _HOST_ENV}
        env.update(container.environment)
        env["SM_MODEL_DIR"] = str(model_dir)
        command = [sys.executable, "-I", str(CONTAINER), "--model-dir", str(model_dir)]
        if container.network_isolation:
            command.append("--network-isolation")
        self._process = subprocess.Popen(  # noqa: S603 - our own worker module
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log or subprocess.DEVNULL,
            env=env,
            cwd=self._dir.name,
            text=True,
        )
        self._lock = threading.Lock()
        ready = self._read()
        self.failure = "" if ready.get("ready") else str(ready.get("error") or "the container exited")

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            return {"ready": False, "error": f"the container exited with {self._process.wait()}"}
        return dict(json.loads(line))

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[int, str, bytes]:
        request = {"content_type": content_type, "accept": accept, "body": base64.b64encode(body).decode()}
        with self._lock:
            assert self._process.stdin is not None
            try:
                self._process.stdin.write(json.dumps(request) + "\n")
                self._process.stdin.flush()
            except BrokenPipeError:
                raise model_error("the container is not running", 500) from None
            answer = self._read()
        if "status" not in answer:
            raise model_error(str(answer.get("error", "the container stopped answering")), 500)
        return int(answer["status"]), str(answer["content_type"]), base64.b64decode(answer["body"])

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._dir.cleanup()


@dataclass
class InferenceServer:
    """HTTP server on 127.0.0.1 answering sagemaker-runtime InvokeEndpoint for endpoints in moto."""

    sagemaker_client: Any
    s3_client: Any
    account: str
    host: str = "127.0.0.1"
    port: int = 0
    log_file: Path | None = None
    cfn_client: Any = None  # repairs moto's stale model references after stack updates (describe_model)
    calls_file: Path | None = None  # where each InvokeEndpoint and its caller are recorded (iam_recorder)
    _workers: dict[str, Worker] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _starting: threading.Lock = field(default_factory=threading.Lock, init=False)  # one start at a time
    _server: ThreadingHTTPServer | None = field(default=None, init=False)
    _log: IO[str] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the inference server is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> InferenceServer:
        server = self
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_file.open("a", buffering=1)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.record(urlparse(self.path).path, self.headers)
                status, headers, payload = server.handle(
                    urlparse(self.path).path,
                    self.headers.get("Content-Type", ""),
                    self.headers.get("Accept", ""),
                    body,
                    {key.lower(): value for key, value in self.headers.items()},
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
                return

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="sagemaker-runtime", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    # --- request handling -------------------------------------------------------------------------

    def record(self, path: str, headers: Any) -> None:
        """Record the call and its caller for the IAM audit, as moto's requests are (iam_recorder)."""
        if self.calls_file is None:
            return
        from . import iam_recorder

        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "endpoints":
            return
        key, region, _service = iam_recorder.access_key_of(headers)
        call = iam_recorder.Call(
            service="sagemaker",
            operation="InvokeEndpointAsync" if parts[2] == "async-invocations" else "InvokeEndpoint",
            principal=iam_recorder.principal_of(key, self.account) if key else "",
            params={"EndpointName": unquote(parts[1])},
            account=self.account,
            region=region or "us-east-1",
        )
        iam_recorder.record_call(self.calls_file, call)

    def handle(
        self,
        path: str,
        content_type: str,
        accept: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one request (`headers` with lower-case names); errors in botocore's
        rest-json error shape."""
        started = time.time()
        parts = path.strip("/").split("/")
        try:
            if len(parts) == 3 and parts[0] == "endpoints" and parts[2] == "async-invocations":
                return self.queue_async(unquote(parts[1]), headers or {})
            if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
                raise InvokeError(404, "UnknownOperationException", f"no operation at {path}")
            endpoint = unquote(parts[1])
            payload, out_type, variant = self.invoke(endpoint, content_type, accept, body)
            self._say(f"{endpoint} 200 {len(body)}B in, {(time.time() - started) * 1000:.1f} ms")
            return 200, {"Content-Type": out_type, "x-Amzn-Invoked-Production-Variant": variant}, payload
        except Exception as exc:  # noqa: BLE001 - every failure must reach the client as an HTTP error
            error = (
                exc
                if isinstance(exc, InvokeError)
                else InvokeError(
                    500, "InternalFailure", f"the local inference server failed: {type(exc).__name__}: {exc}"
                )
            )
            return self._error(path, error)

    def _error(self, path: str, exc: InvokeError) -> tuple[int, dict[str, str], bytes]:
        self._say(f"{path} {exc.status} {exc.code}: {exc.message}")
        document = {"__type": exc.code, "message": exc.message, **exc.extra}
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": exc.code}
        return exc.status, headers, json.dumps(document).encode()

    def invoke(self, endpoint: str, content_type: str, accept: str, body: bytes) -> tuple[bytes, str, str]:
        """Answer with the container the endpoint serves now: (body, content type, variant name)."""
        container = self.resolve(endpoint)
        worker = self._worker(endpoint, container)
        if worker.failure:
            raise InvokeError(
                400,
                "ValidationError",
                f"Endpoint {endpoint} of account {self.account} is not in service: the primary container for "
                f"variant {container.variant} did not pass the ping health check: {worker.failure}",
            )
        status, out_type, payload = worker.invoke(body, content_type, accept)
        if not 200 <= status < 300:
            raise model_error(payload.decode("utf-8", "replace")[:2000], status)
        return payload, out_type, container.variant

    def endpoint_config(self, endpoint: str) -> dict[str, Any]:
        sm = self.sagemaker_client
        try:
            config_name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        except sm.exceptions.ClientError as exc:
            raise InvokeError(
                400, "ValidationError", f"Endpoint {endpoint} of account {self.account} not found."
            ) from exc
        return dict(sm.describe_endpoint_config(EndpointConfigName=config_name))

    def resolve(self, endpoint: str) -> Container:
        """Endpoint → config → model → container, as SageMaker reports them right now."""
        config = self.endpoint_config(endpoint)
        variant = config["ProductionVariants"][0]
        name = str(config["EndpointConfigName"])
        return self.container_of(name, variant["ModelName"], variant["VariantName"])

    def container_of(self, config_name: str, model_name: str, variant_name: str) -> Container:
        """Model → container (the model package's, with the model's Environment on top)."""
        sm = self.sagemaker_client
        variant = {"ModelName": model_name, "VariantName": variant_name}
        model = describe_model(sm, self.cfn_client, config_name, model_name)
        primary = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        container = dict(primary)
        environment: dict[str, str] = {}
        if primary.get("ModelPackageName"):
            package = sm.describe_model_package(ModelPackageName=primary["ModelPackageName"])
            container = {**package["InferenceSpecification"]["Containers"][0], **container}
            environment.update(package["InferenceSpecification"]["Containers"][0].get("Environment") or {})
        environment.update(primary.get("Environment") or {})
        url, image = container.get("ModelDataUrl"), str(container.get("Image", ""))
        if not url:
            raise model_error(f"model {variant['ModelName']} has no ModelDataUrl", 500)
        if image.rpartition(":")[0].rsplit("/", 1)[-1] != XGBOOST_REPOSITORY:
            raise model_error(
                f"the local runtime serves only the {XGBOOST_REPOSITORY} image, not {image}", 500
            )
        return Container(
            variant=str(variant["VariantName"]),
            image=image,
            model_data_url=str(url),
            environment={str(k): str(v) for k, v in environment.items()},
            network_isolation=network_isolation(self.cfn_client, model),
        )

    # --- asynchronous inference ----------------------------------------------------------------------

    def queue_async(self, endpoint: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Accept the request (202, the output location) and answer it later on a worker thread."""
        config = self.endpoint_config(endpoint)
        async_config = config.get("AsyncInferenceConfig") or {}
        output = async_config.get("OutputConfig") or {}
        if not output.get("S3OutputPath"):
            raise InvokeError(
                400,
                "ValidationError",
                f"Endpoint {endpoint} of account {self.account} is not configured "
                "for asynchronous inference (its endpoint config has no AsyncInferenceConfig).",
            )
        input_location = headers.get("x-amzn-sagemaker-inputlocation", "")
        if not input_location.startswith("s3://"):
            raise InvokeError(400, "ValidationError", "InputLocation must be an S3 URI.")
        inference_id = headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
        output_location = f"{output['S3OutputPath'].rstrip('/')}/{inference_id}.out"
        failure_path = output.get("S3FailurePath", "")
        failure_location = f"{failure_path.rstrip('/')}/{inference_id}-error.out" if failure_path else ""
        request = (
            headers.get("x-amzn-sagemaker-content-type", "application/octet-stream"),
            headers.get("x-amzn-sagemaker-accept", ""),
        )
        threading.Thread(
            target=self._answer_async,
            args=(endpoint, input_location, output_location, failure_location, *request),
            name=f"async-{inference_id}",
            daemon=True,
        ).start()
        answer = {"X-Amzn-SageMaker-OutputLocation": output_location, "Content-Type": "application/json"}
        if failure_location:
            answer["X-Amzn-SageMaker-FailureLocation"] = failure_location
        self._say(f"{endpoint} 202 queued {input_location} -> {output_location}")
        return 202, answer, json.dumps({"InferenceId": inference_id}).encode()

    def _put(self, uri: str, body: bytes) -> None:
        location = urlparse(uri)
        self.s3_client.put_object(Bucket=location.netloc, Key=location.path.lstrip("/"), Body=body)

    def _get(self, uri: str) -> bytes:
        location = urlparse(uri)
        return bytes(
            self.s3_client.get_object(Bucket=location.netloc, Key=location.path.lstrip("/"))["Body"].read()
        )

    def _answer_async(
        self, endpoint: str, source: str, output: str, failure: str, content_type: str, accept: str
    ) -> None:
        try:
            payload, _, _ = self.invoke(endpoint, content_type, accept, self._get(source))
        except Exception as exc:  # noqa: BLE001 - every failure goes to the failure location
            message = exc.message if isinstance(exc, InvokeError) else f"{type(exc).__name__}: {exc}"
            self._say(f"{endpoint} async {source} failed: {message}")
            if failure:
                self._put(failure, message.encode())
            return
        self._put(output, payload)
        self._say(f"{endpoint} async {source} -> {output}")

    # --- batch transform ---------------------------------------------------------------------------

    def run_transform_job(self, job: Any) -> None:
        """Run one of moto's transform jobs (see the module docstring); sets its status at the end."""
        name = str(job.transform_job_name)
        key = f"transform:{name}"
        try:
            container = self.container_of("", str(job.model_name), "AllTraffic")
            worker = self._worker(key, container)
            if worker.failure:
                raise RuntimeError(f"the model container failed its ping: {worker.failure}")
            self._transform(job, worker)
        except Exception as exc:  # noqa: BLE001 - any failure ends the job Failed with its reason
            message = exc.message if isinstance(exc, InvokeError) else f"{type(exc).__name__}: {exc}"
            job.failure_reason = f"ClientError: {message}"[:1024]
            job.transform_job_status = "Failed"
            self._say(f"transform job {name} Failed: {message}")
        else:
            job.transform_job_status = "Completed"
            self._say(f"transform job {name} Completed")
        finally:
            with self._lock:
                worker_left = self._workers.pop(key, None)
            if worker_left is not None:
                worker_left.stop()

    def _transform(self, job: Any, worker: Worker) -> None:
        source = job.transform_input["DataSource"]["S3DataSource"]
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise RuntimeError(f"the sandbox transforms S3Prefix inputs only, not {source.get('S3DataType')}")
        prefix = urlparse(source["S3Uri"])
        bucket, key_prefix = prefix.netloc, prefix.path.lstrip("/")
        content_type = str(job.transform_input.get("ContentType", ""))
        split = str(job.transform_input.get("SplitType", "None"))
        output = job.transform_output or {}
        accept, assemble = str(output.get("Accept", "")), str(output.get("AssembleWith", "None"))
        limit = int(job.max_payload_in_mb or 6) * 1024 * 1024
        multi = (job.batch_strategy or "SingleRecord") == "MultiRecord"
        pages = self.s3_client.get_paginator("list_objects_v2")
        keys = [
            item["Key"]
            for page in pages.paginate(Bucket=bucket, Prefix=key_prefix)
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/")
        ]
        if not keys:
            raise RuntimeError(f"no objects under {source['S3Uri']}")
        for key in keys:
            data = self._get(f"s3://{bucket}/{key}")
            records = [line for line in data.split(b"\n") if line.strip()] if split == "Line" else [data]
            requests: list[list[bytes]] = []
            for record in records:
                if requests and multi and sum(len(r) + 1 for r in requests[-1]) + len(record) <= limit:
                    requests[-1].append(record)
                else:
                    requests.append([record])
            answers = []
            for batch in requests:
                status, _, payload = worker.invoke(b"\n".join(batch), content_type, accept)
                if not 200 <= status < 300:
                    raise RuntimeError(
                        f"the model answered {status} for s3://{bucket}/{key}: "
                        f"{payload.decode('utf-8', 'replace')[:500]}"
                    )
                answers.append(payload)
            body = (
                b"".join(a.rstrip(b"\n") + b"\n" for a in answers)
                if assemble == "Line"
                else b"".join(answers)
            )
            relative = key[len(key_prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            self._put(f"{output['S3OutputPath'].rstrip('/')}/{relative}.out", body)

    def _worker(self, endpoint: str, container: Container) -> Worker:
        with self._starting:
            return self._current_or_new_worker(endpoint, container)

    def _current_or_new_worker(self, endpoint: str, container: Container) -> Worker:
        with self._lock:
            current = self._workers.get(endpoint)
            if current is not None and current.container.key == container.key:
                return current
        location = urlparse(container.model_data_url)
        try:
            archive = self.s3_client.get_object(Bucket=location.netloc, Key=location.path.lstrip("/"))[
                "Body"
            ].read()
        except self.s3_client.exceptions.ClientError as exc:
            raise model_error(
                f"cannot download the model artifact {container.model_data_url}: {exc}", 500
            ) from exc
        try:
            worker = Worker(container, archive, self._log)
        except (tarfile.TarError, OSError) as exc:
            raise model_error(
                f"the model artifact {container.model_data_url} is not a model.tar.gz: {exc}", 500
            ) from exc
        with self._lock:
            old, self._workers[endpoint] = self._workers.get(endpoint), worker  # one container per endpoint
        if old is not None:
            old.stop()
        mode = "script mode" if "SAGEMAKER_PROGRAM" in container.environment else "algorithm mode"
        self._say(
            f"{endpoint} started {container.image.rsplit('/', 1)[-1]} ({mode}) for {container.model_data_url}"
            + (f": ping failed: {worker.failure}" if worker.failure else "")
        )
        return worker

    def _say(self, line: str) -> None:
        if self._log is not None:
            with contextlib.suppress(ValueError):
                self._log.write(f"{time.strftime('%H:%M:%S')} {line}\n")


_TRANSFORM_SERVERS: list[InferenceServer] = []
_PATCHED = "_sandbox_transform_jobs"


def serve_transform_jobs(server: InferenceServer) -> None:
    """Make moto's CreateTransformJob report InProgress and run the job on `server` (moto runs nothing and
    reports Completed at once). The newest server installed serves; idempotent."""
    from moto.sagemaker.models import SageMakerModelBackend

    _TRANSFORM_SERVERS.append(server)
    original = SageMakerModelBackend.create_transform_job
    if getattr(original, _PATCHED, False):
        return

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = original(self, *args, **kwargs)
        if _TRANSFORM_SERVERS:
            job.transform_job_status = "InProgress"
            runner = _TRANSFORM_SERVERS[-1]
            threading.Thread(target=runner.run_transform_job, args=(job,), daemon=True).start()
        return job

    setattr(create, _PATCHED, True)
    SageMakerModelBackend.create_transform_job = create  # type: ignore[method-assign]


def stop_serving_transform_jobs(server: InferenceServer) -> None:
    if server in _TRANSFORM_SERVERS:
        _TRANSFORM_SERVERS.remove(server)
