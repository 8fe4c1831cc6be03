"""Inference entry point: raw Abalone records in, predicted rings out.

Shipped inside model.tar.gz as `code/inference.py` (with `code/features.py`) and registered with
SAGEMAKER_PROGRAM=inference.py, SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code: the built-in
XGBoost image 3.0-5 then serves it in script mode, calling the four hooks below for every
request of a real-time, serverless or asynchronous endpoint and of a batch transform job. The
evaluation step calls the same hooks on the held-out records. See the model-deploy README for the
contract (content types, column order, errors).

Client errors are raised as HTTP exceptions (werkzeug's, which the serving container's Flask turns
into the response status and body); elsewhere (the evaluation step, tests without werkzeug) they
are plain exceptions with the same `code`.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

try:  # in the container (and the evaluation step): features.py sits next to this file in code/
    import features
except ImportError:  # in this repository
    from pipelines.abalone import features  # type: ignore[no-redef]

try:
    from werkzeug.exceptions import HTTPException
except ImportError:  # not in a serving container

    class HTTPException(Exception):  # type: ignore[no-redef]
        code: int | None = None

        def __init__(self, description: str | None = None) -> None:
            super().__init__(description)
            self.description = description


MODEL_FILE = "xgboost-model"
CSV = "text/csv"
JSON = "application/json"
ACCEPTS = (CSV, JSON)
PICKLE_MARKER = 0x80


class RequestError(HTTPException):
    """A request this model cannot answer: HTTP `code` with a JSON body {"error", "message"}."""

    code = 400
    error = "BadRequest"

    def __init__(self, message: str) -> None:
        super().__init__(description=message)

    def get_body(self, environ: Any = None, scope: Any = None) -> str:
        return json.dumps({"error": self.error, "message": self.description})

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Content-Type", JSON)]


class BadRecord(RequestError):
    code, error = 400, "BadRecord"


class UnsupportedContentType(RequestError):
    code, error = 415, "UnsupportedContentType"


class UnsupportedAccept(RequestError):
    code, error = 406, "UnsupportedAccept"


def media_type(header: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv'."""
    return (header or "").split(";", 1)[0].strip().lower()


def load_booster(path: Path) -> Any:
    """The booster in `path`, saved as the built-in container saves it (save_model) or pickled (0.90 images)."""
    import xgboost as xgb

    raw = path.read_bytes()
    if raw[:1] == bytes([PICKLE_MARKER]):
        # The artifact comes from this pipeline's own training job (trusted input).
        booster = pickle.loads(raw)  # noqa: S301
        if not isinstance(booster, xgb.Booster):
            raise TypeError(f"{path.name} holds a pickled {type(booster).__name__}, not an xgboost Booster")
        return booster
    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    return booster


def model_fn(model_dir: str) -> Any:
    """Load the booster from the model directory and check it takes exactly our features."""
    booster = load_booster(Path(model_dir) / MODEL_FILE)
    expected = len(features.FEATURE_COLUMNS)
    if booster.num_features() != expected:
        raise RuntimeError(
            f"the model takes {booster.num_features()} features but features.py computes {expected}: "
            "the model and the feature code in this artifact do not belong together"
        )
    return booster


def input_fn(request_body: bytes | str, request_content_type: str) -> np.ndarray:
    """text/csv raw records (features.RAW_COLUMNS order, no header) -> feature rows."""
    if media_type(request_content_type) != CSV:
        raise UnsupportedContentType(
            f"content type {request_content_type or '(none)'} is not supported; send text/csv records "
            f"{','.join(features.RAW_COLUMNS)}"
        )
    try:
        text = request_body.decode("utf-8") if isinstance(request_body, bytes | bytearray) else str(request_body)
    except UnicodeDecodeError:
        raise BadRecord("the request body is not UTF-8 text") from None
    try:
        return features.features_from_csv(text)
    except features.RecordError as error:
        raise BadRecord(str(error)) from None


def predict_fn(input_data: np.ndarray, model: Any) -> np.ndarray:
    """Predicted rings, one per row."""
    import xgboost as xgb

    return np.asarray(model.predict(xgb.DMatrix(np.asarray(input_data, dtype=np.float32))), dtype=float)


def choose_accept(accept: str | None) -> str:
    """The first supported type of an Accept header; text/csv when none is asked for (or */*)."""
    for part in (accept or "").split(","):
        kind = media_type(part)
        if kind in ("", "*/*", "text/*"):
            return CSV
        if kind in ACCEPTS:
            return kind
    raise UnsupportedAccept(f"accept {accept!r} is not supported; ask for {' or '.join(ACCEPTS)}")


def output_fn(prediction: np.ndarray, accept: str) -> tuple[str, str]:
    """(body, content type): text/csv one prediction per line, or JSON {"predictions": [{"score": ..}]}."""
    kind = choose_accept(accept)
    values = [float(value) for value in np.asarray(prediction, dtype=float).ravel()]
    if kind == JSON:
        return json.dumps({"predictions": [{"score": value} for value in values]}), JSON
    return "".join(f"{value!r}\n" for value in values), CSV
