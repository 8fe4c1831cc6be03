"""The SageMaker XGBoost serving container (image 3.0-5), as a worker process of the local runtime.

    python -I xgboost_container.py --model-dir DIR [--network-isolation]

The environment is the container's (the model package's container Environment), the model
directory is the extracted model.tar.gz (SageMaker's /opt/ml/model). The worker answers JSON lines
on stdin/stdout: first {"ready": bool, "error": str} (the /ping health check), then one response
{"status", "content_type", "body"} (body base64) per request {"content_type", "accept", "body"}.

Rules reproduced, with their sources (aws/sagemaker-xgboost-container at commit cb8df91; the
sagemaker-containers 2.8.6.post2 package it serves script mode with, read from PyPI):

- Mode: SAGEMAKER_PROGRAM unset selects algorithm mode; set, even to "", script mode
  (serving.py main(): `serving_env.module_name is None`; _env.ServingEnv keeps "" as is), and ""
  fails at import: ValueError "Empty module name", so /ping fails. A ".py" suffix is dropped.
- Script mode code: SAGEMAKER_SUBMIT_DIRECTORY (default /opt/ml/code) is copied to /opt/ml/code and
  pip-installed (_modules.import_module, _files.download_and_extract): an s3:// directory needs
  network access, and so does a requirements.txt; with EnableNetworkIsolation both fail. Here the
  directory must lie in the artifact (/opt/ml/model/...).
- Script mode hooks (serving.py _user_module_transformer; _transformer.Transformer): model_fn (no
  default: NotImplementedError), input_fn (default: CSV/libsvm to DMatrix), predict_fn (default:
  booster.predict(validate_features=False)), output_fn (default: JSON/CSV/NPY encoding); transform_fn
  excludes the other three. Initialisation (import, model_fn) happens on the first request, /ping
  included. The request body reaches input_fn as text for text/csv and application/json, as bytes
  otherwise (_worker.Request.content); a missing Content-Type is application/json, a missing or */*
  Accept is SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT or application/json. UnsupportedFormatError from
  input_fn is 415, from output_fn 406 (JSON body); a werkzeug HTTPException raised by a hook is its
  own status and body (Flask); any other exception is 500. A (body, content type) tuple sets the
  response type; a bare str/bytes is served as text/html (Flask's default).
- Algorithm mode (algorithm_mode/serve.py, serve_utils.py): the first file of the model directory,
  unpickled or else Booster.load_model; an empty body is 204; text/csv parsed as floats (a cell
  that is not a number: 415 "Loading csv data failed"); a pickled model checks the
  column count (equal, or one less: else 400); xgboost refuses more columns than the model has (400)
  but accepts fewer; Accept defaults to SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT or text/csv and must be
  application/json, application/jsonlines, application/x-recordio-protobuf or text/csv (else 406);
  output CSV one value per line, JSON {"predictions": [{"score": v}]}.

sagemaker-containers itself is not installed to run this: it pins Flask 1.1.1 (moto's server needs a
newer Flask) and compiles a C extension; its rules are re-stated here instead, and the tests check them
on the seed's real artifact (tests/integration/scripts/sandbox/test_inference.py).

Leaves out: multi-model endpoints (MMS), selectable inference outputs, ensembles, libsvm,
recordio-protobuf and jsonlines encodings, GPU, the image's own Python and package versions (the
host's run), and which modules the image has (the host's site-packages are importable).
"""

from __future__ import annotations

import argparse
import base64
import csv
import importlib
import io
import json
import os
import pickle
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

CSV = "text/csv"
JSON = "application/json"
NPY = "application/x-npy"
MODEL_ROOT = "/opt/ml/model"
DEFAULT_CODE_DIR = "/opt/ml/code"
ALGORITHM_ACCEPTS = ("application/json", "application/jsonlines", "application/x-recordio-protobuf", CSV)

Response = tuple[int, str, bytes]


class StartupError(Exception):
    """The container cannot serve: /ping fails with this message."""


class UnsupportedFormatError(Exception):
    """sagemaker_containers' error for a content type a default hook cannot handle."""


def media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _http_exception() -> type[BaseException] | None:
    try:
        from werkzeug.exceptions import HTTPException
    except ImportError:
        return None
    return HTTPException


# --- algorithm mode ---------------------------------------------------------------------------------


def load_booster(model_dir: Path) -> tuple[Any, str]:
    """(booster, "pkl_format" | "xgb_format") from the first file in the model directory."""
    import xgboost

    files = sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise StartupError(f"no model file in {MODEL_ROOT}")
    raw = files[0].read_bytes()
    try:
        return pickle.loads(raw), "pkl_format"  # noqa: S301 - the project's own artifact
    except Exception:  # noqa: BLE001 - the container falls back to load_model on any unpickling error
        booster = xgboost.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgboost.core.XGBoostError as exc:
            raise StartupError(f"Model {files[0].name} cannot be loaded: {exc}") from None
        return booster, "xgb_format"


def parse_algorithm_payload(body: bytes, content_type: str) -> Any:
    import numpy
    import xgboost

    kind = media_type(content_type)
    text = body.strip().decode("utf-8")
    if kind == CSV:
        try:
            rows = [["nan" if cell == "" else cell for cell in line.split(",")] for line in text.split("\n")]
            return xgboost.DMatrix(numpy.array(rows).astype(float))
        except Exception as exc:  # noqa: BLE001 - every parse failure is the container's 415
            raise ValueError(
                "Loading csv data failed with Exception, please ensure data is in csv format:"
                f"\n {type(exc)}\n {exc}"
            ) from None
    raise ValueError(f"Content-type {content_type} is not supported.")


def algorithm_invoke(model: tuple[Any, str], body: bytes, content_type: str, accept: str) -> Response:
    booster, model_format = model
    if not body:
        return 204, CSV, b""
    try:
        data = parse_algorithm_payload(body, content_type)
    except ValueError as exc:
        return 415, "text/html", str(exc).encode()
    try:
        if model_format == "pkl_format":
            expected, given = booster.num_features(), data.num_col()
            if not (expected == given or expected == given + 1):
                raise ValueError(
                    f"Feature size of {media_type(content_type)} inference data {given} is not consistent "
                    f"with feature size of trained model {expected}."
                )
        predictions = booster.predict(data, validate_features=False).tolist()
    except Exception as exc:  # noqa: BLE001 - the container answers 400 to any prediction failure
        return 400, "text/html", f"Unable to evaluate payload provided: {exc}".encode()
    chosen = media_type(accept)
    if not chosen or chosen == "*/*":
        chosen = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", CSV)
    if chosen not in ALGORITHM_ACCEPTS:
        return 406, "text/html", f"Accept type {accept} is not supported.".encode()
    if os.environ.get("SAGEMAKER_BATCH"):
        return 200, chosen, ("\n".join(map(str, predictions)) + "\n").encode()
    if chosen == JSON:
        return 200, JSON, json.dumps({"predictions": [{"score": p} for p in predictions]}).encode()
    if chosen != CSV:
        return 406, "text/html", f"Accept type {accept} is not supported by this stand-in.".encode()
    return 200, CSV, _csv(predictions).encode()


def _csv(values: Any) -> str:
    import numpy

    array = numpy.array(values)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n").writerows(array.tolist())
    return stream.getvalue()


# --- script mode ------------------------------------------------------------------------------------


def code_directory(model_dir: Path, network_isolation: bool) -> Path:
    """Where SAGEMAKER_SUBMIT_DIRECTORY points inside the extracted artifact (see the module docstring)."""
    submit = os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY", DEFAULT_CODE_DIR)
    if submit.startswith("s3://"):
        if network_isolation:
            raise StartupError(
                f"SAGEMAKER_SUBMIT_DIRECTORY={submit}: the model is network-isolated, so the container "
                f"cannot download it; package the code into model.tar.gz (code/), point at {MODEL_ROOT}/code"
            )
        raise StartupError(
            f"SAGEMAKER_SUBMIT_DIRECTORY={submit}: the local runtime serves code from the artifact only"
        )
    if submit == MODEL_ROOT or submit.startswith(MODEL_ROOT + "/"):
        directory = model_dir / submit[len(MODEL_ROOT) :].lstrip("/")
    else:
        raise StartupError(
            f"SAGEMAKER_SUBMIT_DIRECTORY={submit!r} is not in the model artifact ({MODEL_ROOT}/...)"
        )
    if not directory.is_dir():
        raise StartupError(
            f"ImportModuleError: {submit} does not exist: model.tar.gz has no {directory.name}/ directory"
        )
    if network_isolation and (directory / "requirements.txt").exists():
        raise StartupError(
            f"InstallModuleError: {submit}/requirements.txt needs pip to reach a package index, which a "
            "network-isolated model cannot"
        )
    return directory


class ScriptMode:
    """The user module's hooks around the defaults, as sagemaker_containers' Transformer calls them."""

    def __init__(self, module: Any, model_dir: Path) -> None:
        self.transform_fn: Callable[..., Any] | None = getattr(module, "transform_fn", None)
        hooks = {name: getattr(module, name, None) for name in ("input_fn", "predict_fn", "output_fn")}
        if self.transform_fn is not None and any(hooks.values()):
            raise StartupError(
                "UserError: Cannot use transform_fn implementation with input_fn, predict_fn, "
                "and/or output_fn"
            )
        model_fn = getattr(module, "model_fn", None)
        if model_fn is None:
            raise StartupError("NotImplementedError: Please provide a model_fn implementation.")
        self.input_fn: Callable[..., Any] = hooks["input_fn"] or default_input_fn
        self.predict_fn: Callable[..., Any] = hooks["predict_fn"] or default_predict_fn
        self.output_fn: Callable[..., Any] = hooks["output_fn"] or default_output_fn
        self.model = model_fn(str(model_dir))

    def invoke(self, body: bytes, content_type: str, accept: str) -> Response:
        content_type = content_type or JSON
        if not accept or accept == "*/*":
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", JSON)
        content: bytes | str = body.decode("utf-8") if media_type(content_type) in (JSON, CSV) else body
        try:
            if self.transform_fn is not None:
                result = self.transform_fn(self.model, content, content_type, accept)
            else:
                try:
                    data = self.input_fn(content, content_type)
                except UnsupportedFormatError as exc:
                    return _format_error(exc, 415)
                prediction = self.predict_fn(data, self.model)
                try:
                    result = self.output_fn(prediction, accept)
                except UnsupportedFormatError as exc:
                    return _format_error(exc, 406)
        except Exception as exc:  # noqa: BLE001 - Flask's handling of whatever a hook raises
            return _flask_error(exc)
        if isinstance(result, tuple):
            payload, mimetype = result[0], str(result[1])
        else:
            payload, mimetype = result, "text/html; charset=utf-8"
        return 200, mimetype, payload if isinstance(payload, bytes) else str(payload).encode("utf-8")


def default_input_fn(content: bytes | str, content_type: str) -> Any:
    import numpy
    import xgboost

    kind = media_type(content_type)
    text = content if isinstance(content, str) else content.decode("utf-8")
    if kind == CSV:
        rows = [["nan" if cell == "" else cell for cell in line.split(",")] for line in text.split("\n")]
        return xgboost.DMatrix(numpy.array(rows).astype(float))
    raise UnsupportedFormatError(content_type)


def default_predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data, validate_features=False)


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    import numpy

    kind = media_type(accept)
    if kind == JSON:
        return json.dumps(numpy.asarray(prediction).tolist()).encode(), accept
    if kind == CSV:
        return _csv(prediction).encode(), accept
    if kind == NPY:
        buffer = io.BytesIO()
        numpy.save(buffer, numpy.asarray(prediction))
        return buffer.getvalue(), accept
    raise UnsupportedFormatError(accept)


def _format_error(exc: Exception, status: int) -> Response:
    document = {"error": type(exc).__name__, "error-message": str(exc), "stack-trace": traceback.format_exc()}
    return status, JSON, json.dumps(document).encode()


def _flask_error(exc: Exception) -> Response:
    http_exception = _http_exception()
    if http_exception is not None and isinstance(exc, http_exception):
        response = exc.get_response()  # type: ignore[attr-defined]
        return int(response.status_code), str(response.content_type), bytes(response.get_data())
    traceback.print_exc(file=sys.stderr)
    return 500, "text/html; charset=utf-8", b"<!doctype html>\n<title>500 Internal Server Error</title>\n"


# --- the worker -------------------------------------------------------------------------------------


def start(model_dir: Path, network_isolation: bool) -> Callable[[bytes, str, str], Response]:
    """The container after its first request: an invoke function, or StartupError (failed /ping)."""
    program = os.environ.get("SAGEMAKER_PROGRAM")
    if program is None:
        model = load_booster(model_dir)
        return lambda body, content_type, accept: algorithm_invoke(model, body, content_type, accept)
    module_name = program[:-3] if program.endswith(".py") else program
    if not module_name:
        raise StartupError(
            "ValueError: Empty module name (SAGEMAKER_PROGRAM is set but empty: the XGBoost image takes "
            "that for script mode; unset it for algorithm mode or name the entry point)"
        )
    code = code_directory(model_dir, network_isolation)
    sys.path.insert(0, str(code))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure fails the container
        raise StartupError(f"ImportModuleError: {type(exc).__name__}: {exc}") from None
    try:
        mode = ScriptMode(module, model_dir)
    except StartupError:
        raise
    except Exception as exc:  # noqa: BLE001 - model_fn failures fail the container
        raise StartupError(f"model_fn failed: {type(exc).__name__}: {exc}") from None
    return mode.invoke


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--network-isolation", action="store_true")
    args = parser.parse_args(argv)
    out = sys.stdout
    sys.stdout = sys.stderr  # user code's prints go to the log, not into the protocol
    try:
        invoke = start(args.model_dir, args.network_isolation)
    except StartupError as exc:
        out.write(json.dumps({"ready": False, "error": str(exc)}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ready": True, "error": ""}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        status, content_type, payload = invoke(
            base64.b64decode(request["body"]), request["content_type"], request["accept"]
        )
        response = {
            "status": status,
            "content_type": content_type,
            "body": base64.b64encode(payload).decode(),
        }
        out.write(json.dumps(response) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
