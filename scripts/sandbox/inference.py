"""Local SageMaker runtime: InvokeEndpoint served from the endpoint's real model artifact.

Reproduces: `POST /endpoints/{name}/invocations` as botocore's sagemaker-runtime client sends it (point
`AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` at `InferenceServer.url`); the endpoint → endpoint config (first
production variant) → model → container chain as (moto) SageMaker describes it at the time of the
request, so an endpoint moved to a new config serves the new model at once; a model that names a model
package uses the package's inference container ModelDataUrl, otherwise the container's own; the
artifact `model.tar.gz` from (moto) S3 with `xgboost-model` in it, loaded as the built-in XGBoost
container does (pickle if it starts with 0x80, else `Booster.load_model`: UBJSON, JSON or legacy
binary); `text/csv` rows in, predictions out one per line (`application/json` out as
`{"predictions": [{"score": ...}]}`); the error shapes boto3 raises: ValidationError "Endpoint X of
account Y not found." (HTTP 400) and ModelError (HTTP 424) for input the model rejects.

Leaves out: containers other than XGBoost, the container image and its xgboost version (the host's
xgboost predicts: keep it equal to the image's), traffic splitting between variants, data capture,
instance counts and latency, endpoint status transitions, CloudWatch metrics and logs, request size limits.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import tarfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

MODEL_FILE = "xgboost-model"
PICKLE_MAGIC = 0x80


class InvokeError(Exception):
    """An error answered in the shape botocore parses into a ClientError."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def model_error(message: str, original_status: int = 400) -> InvokeError:
    return InvokeError(
        424, "ModelError",
        f"Received client error ({original_status}) from primary with message \"{message}\".",
        OriginalStatusCode=original_status, OriginalMessage=message,
    )


def load_booster(raw: bytes) -> Any:
    """An xgboost Booster from the bytes of `xgboost-model`, whichever way the container saved it."""
    import xgboost

    if raw[:1] == bytes([PICKLE_MAGIC]):
        # Artifacts from the project's own (moto) bucket, written by its own training step.
        model = pickle.loads(raw)  # noqa: S301
        return model.get_booster() if hasattr(model, "get_booster") else model
    booster = xgboost.Booster()
    booster.load_model(bytearray(raw))
    return booster


def extract_model(archive: bytes) -> bytes:
    """The `xgboost-model` member of a model.tar.gz."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and Path(member.name).name == MODEL_FILE:
                extracted = tar.extractfile(member)
                if extracted is not None:
                    return extracted.read()
    raise model_error(f"model.tar.gz has no {MODEL_FILE} file; the training job's output is not an XGBoost "
                      "model", 500)


def parse_csv(body: bytes) -> list[list[float]]:
    """Rows of float features from a text/csv body (no header; empty cells are missing values)."""
    rows: list[list[float]] = []
    try:
        for record in csv.reader(io.StringIO(body.decode("utf-8"))):
            if not record or all(not cell.strip() for cell in record):
                continue
            rows.append([float(cell) if cell.strip() else float("nan") for cell in record])
    except (UnicodeDecodeError, ValueError) as exc:
        raise model_error(f"Loading csv data failed; please ensure the data is in csv format: {exc}") from exc
    if not rows:
        raise model_error("the request has no rows")
    if len({len(r) for r in rows}) != 1:
        raise model_error("rows have different numbers of columns")
    return rows


def format_predictions(predictions: Sequence[Any], accept: str) -> tuple[bytes, str]:
    """Predictions as the XGBoost container writes them for `accept`."""
    values = [p.tolist() if hasattr(p, "tolist") else p for p in predictions]
    if "application/json" in accept:
        return json.dumps({"predictions": [{"score": v} for v in values]}).encode(), "application/json"
    lines = [",".join(repr(float(x)) for x in v) if isinstance(v, list) else repr(float(v)) for v in values]
    return ("\n".join(lines) + "\n").encode(), "text/csv"


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
        if any(r.get("ResourceType") == "AWS::SageMaker::EndpointConfig"
               and r.get("PhysicalResourceId", "").rsplit("/", 1)[-1] == config_name for r in resources):
            for r in resources:
                if r.get("ResourceType") == "AWS::SageMaker::Model" and r.get("PhysicalResourceId"):
                    physical = str(r["PhysicalResourceId"])
                    return dict(sm.describe_model(ModelName=physical.rsplit(":model/", 1)[-1]))
    return dict(sm.describe_model(ModelName=name))


@dataclass
class _Resolved:
    variant: str
    model_data_url: str


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
    _models: dict[tuple[str, str], Any] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the inference server is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> InferenceServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, payload = server.handle(
                    urlparse(self.path).path, self.headers.get("Content-Type", ""),
                    self.headers.get("Accept", "text/csv"), body,
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

    # --- request handling -------------------------------------------------------------------------

    def handle(
        self, path: str, content_type: str, accept: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one request; errors in botocore's rest-json error shape."""
        started = time.time()
        parts = path.strip("/").split("/")
        try:
            if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
                raise InvokeError(404, "UnknownOperationException", f"no operation at {path}")
            endpoint = unquote(parts[1])
            payload, out_type, variant = self.invoke(endpoint, content_type, accept, body)
            self._log(f"{endpoint} 200 {len(body)}B in, {(time.time() - started) * 1000:.1f} ms")
            return 200, {"Content-Type": out_type, "x-Amzn-Invoked-Production-Variant": variant}, payload
        except Exception as exc:  # noqa: BLE001 - every failure must reach the client as an HTTP error
            error = exc if isinstance(exc, InvokeError) else InvokeError(
                500, "InternalFailure", f"the local inference server failed: {type(exc).__name__}: {exc}")
            return self._error(path, error)

    def _error(self, path: str, exc: InvokeError) -> tuple[int, dict[str, str], bytes]:
        self._log(f"{path} {exc.status} {exc.code}: {exc.message}")
        document = {"__type": exc.code, "message": exc.message, **exc.extra}
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": exc.code}
        return exc.status, headers, json.dumps(document).encode()

    def invoke(self, endpoint: str, content_type: str, accept: str, body: bytes) -> tuple[bytes, str, str]:
        """Predict with the model the endpoint serves now: (body, content type, variant name)."""
        resolved = self.resolve(endpoint)
        booster = self._booster(endpoint, resolved.model_data_url)
        media_type = content_type.split(";")[0].strip().lower()
        if media_type != "text/csv":
            raise model_error(f"Content type {content_type or '(none)'} is not supported by this framework; "
                              "send text/csv", 415)
        rows = parse_csv(body)
        import numpy
        import xgboost

        try:
            predictions = booster.predict(xgboost.DMatrix(numpy.asarray(rows, dtype=numpy.float32)))
        except (ValueError, xgboost.core.XGBoostError) as exc:
            raise model_error(str(exc).splitlines()[0]) from exc
        payload, out_type = format_predictions(predictions, accept)
        return payload, out_type, resolved.variant

    def resolve(self, endpoint: str) -> _Resolved:
        """Endpoint → config → model → model data URL, as SageMaker reports them right now."""
        sm = self.sagemaker_client
        try:
            config_name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        except sm.exceptions.ClientError as exc:
            raise InvokeError(400, "ValidationError",
                              f"Endpoint {endpoint} of account {self.account} not found.") from exc
        variant = sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"][0]
        model = describe_model(sm, self.cfn_client, config_name, variant["ModelName"])
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        url = container.get("ModelDataUrl")
        if container.get("ModelPackageName"):
            package = sm.describe_model_package(ModelPackageName=container["ModelPackageName"])
            url = package["InferenceSpecification"]["Containers"][0].get("ModelDataUrl") or url
        if not url:
            raise model_error(f"model {variant['ModelName']} has no ModelDataUrl", 500)
        return _Resolved(variant["VariantName"], str(url))

    def _booster(self, endpoint: str, model_data_url: str) -> Any:
        key = (endpoint, model_data_url)
        with self._lock:
            if key in self._models:
                return self._models[key]
        location = urlparse(model_data_url)
        try:
            archive = self.s3_client.get_object(Bucket=location.netloc, Key=location.path.lstrip("/"))["Body"]
            raw = extract_model(archive.read())
        except self.s3_client.exceptions.ClientError as exc:
            raise model_error(f"cannot download the model artifact {model_data_url}: {exc}", 500) from exc
        booster = load_booster(raw)
        with self._lock:
            # one model per endpoint: a new artifact replaces the previous one
            self._models = {k: v for k, v in self._models.items() if k[0] != endpoint}
            self._models[key] = booster
        self._log(f"{endpoint} loaded {model_data_url}")
        return booster

    def _log(self, line: str) -> None:
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a") as out:
                out.write(f"{time.strftime('%H:%M:%S')} {line}\n")
