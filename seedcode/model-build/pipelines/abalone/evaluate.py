"""Evaluate the trained model on the held-out test rows and write evaluation.json.

Runs inside the built-in XGBoost container (and locally under `run-pipeline --local`),
so it only uses the standard library, numpy, pandas and xgboost. It loads every model
format the built-in containers write: pickle (0.90 and early 1.x), the legacy binary
format (`binf`, 1.x `save_model`), JSON and UBJSON (2.x/3.x `save_model`).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL_FILE = "xgboost-model"
PICKLE_MARKER = 0x80
LEGACY_BINARY_MARKER = b"binf"
UBJSON_TYPE_MARKERS = b"iUIlLdD"


class ModelFormatError(ValueError):
    """The model file is not in a format the built-in XGBoost containers write."""


def sniff_model_format(head: bytes) -> str:
    """Name the format of a model file from its first bytes: pickle, binary, json or ubjson."""
    if not head:
        raise ModelFormatError("the model file is empty")
    if head[0] == PICKLE_MARKER:
        return "pickle"
    if head.startswith(LEGACY_BINARY_MARKER):
        return "binary"
    stripped = head.lstrip()
    if stripped[:1] == b"{":
        after = stripped[1:].lstrip()
        if after[:1] in (b'"', b"}"):
            return "json"
        if head[:1] == b"{" and head[1:2] and head[1:2] in UBJSON_TYPE_MARKERS:
            return "ubjson"
    raise ModelFormatError(
        f"unrecognised model file (first bytes {head[:8]!r}); expected an XGBoost model saved by the "
        "built-in container: pickle, legacy binary, JSON or UBJSON"
    )


def load_booster(path: Path) -> Any:
    """Load an XGBoost Booster from any format the built-in containers write."""
    import xgboost as xgb

    data = path.read_bytes()
    kind = sniff_model_format(data[:16])
    if kind == "pickle":
        # The artifact comes from this pipeline's own training job (trusted input).
        booster = pickle.loads(data)  # noqa: S301
        if not isinstance(booster, xgb.Booster):
            raise ModelFormatError(f"the pickled model is a {type(booster).__name__}, not an xgboost Booster")
        return booster
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as error:
        raise ModelFormatError(f"xgboost {xgb.__version__} could not load the {kind} model: {error}") from None
    return booster


def extract_model(artifact: Path, workdir: Path) -> Path:
    """Return the path of `xgboost-model` from model.tar.gz (or a directory holding either)."""
    if artifact.is_dir():
        direct = artifact / MODEL_FILE
        if direct.is_file():
            return direct
        archives = sorted(artifact.glob("*.tar.gz"))
        if not archives:
            raise ModelFormatError(f"no {MODEL_FILE} or model.tar.gz found in {artifact}")
        artifact = archives[0]
    with tarfile.open(artifact) as archive:
        member = next((m for m in archive.getmembers() if Path(m.name).name == MODEL_FILE and m.isfile()), None)
        if member is None:
            raise ModelFormatError(f"{artifact.name} does not contain {MODEL_FILE}")
        source = archive.extractfile(member)
        assert source is not None
        target = workdir / MODEL_FILE
        target.write_bytes(source.read())
    return target


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float]]:
    """MSE (with the standard deviation of the errors), RMSE, MAE and R²."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need equally sized, non-empty arrays, got {y_true.shape} and {y_pred.shape}")
    errors = y_true - y_pred
    mse = float(np.mean(errors**2))
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    r2 = 1.0 - float(np.sum(errors**2)) / total if total > 0 else 0.0
    return {
        "mse": {"value": mse, "standard_deviation": float(np.std(errors))},
        "rmse": {"value": math.sqrt(mse)},
        "mae": {"value": float(np.mean(np.abs(errors)))},
        "r2": {"value": r2},
    }


def read_test_rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Held-out rows (CSV, no header, target first) -> (target, features)."""
    files = sorted(p for p in path.rglob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no test CSV found under {path}")
    frame = pd.concat([pd.read_csv(f, header=None) for f in files], ignore_index=True)
    values = frame.to_numpy(dtype=float)
    return values[:, 0], values[:, 1:]


def evaluate(booster: Any, y_true: np.ndarray, features: np.ndarray) -> dict[str, Any]:
    """Predict the test rows and build the evaluation.json document."""
    import xgboost as xgb

    predictions = booster.predict(xgb.DMatrix(features))
    return {"regression_metrics": regression_metrics(y_true, predictions), "test_rows": int(len(y_true))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", default="/opt/ml/processing/model")
    parser.add_argument("--test-dir", default="/opt/ml/processing/test")
    parser.add_argument("--output-dir", default="/opt/ml/processing/evaluation")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            booster = load_booster(extract_model(Path(args.model_dir), Path(tmp)))
        except (ModelFormatError, tarfile.TarError, OSError) as error:
            print(f"evaluate: cannot load the model: {error}", file=sys.stderr)
            return 2
    y_true, features = read_test_rows(Path(args.test_dir))
    report = evaluate(booster, y_true, features)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "evaluation.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    metrics = report["regression_metrics"]
    print(f"evaluate: test MSE {metrics['mse']['value']:.4f}, RMSE {metrics['rmse']['value']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
