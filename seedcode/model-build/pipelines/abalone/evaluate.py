"""Evaluate the packaged model on the held-out records and write evaluation.json.

Runs inside the built-in XGBoost image (and locally under `run-pipeline --local`), so it only uses
the standard library, numpy and pandas. It scores exactly what the endpoint will serve: it unpacks
the packaged model.tar.gz, imports the entry point from its `code/` directory and sends the raw
test records through `model_fn`, `input_fn`, `predict_fn` and `output_fn` as text/csv, the way the
serving container calls them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

MODEL_FILE = "xgboost-model"
CODE_DIR = "code"
ENTRY_POINT = "inference.py"
CSV = "text/csv"
BATCH_ROWS = 500


class ModelFormatError(ValueError):
    """The artifact is not a packaged model this pipeline builds; the message says what is missing."""


def find_archive(path: Path) -> Path:
    """model.tar.gz itself, or the one archive in a directory (a processing input)."""
    if path.is_file():
        return path
    archives = sorted(path.rglob("*.tar.gz"))
    if len(archives) != 1:
        raise ModelFormatError(f"expected one model.tar.gz under {path}, found {[a.name for a in archives]}")
    return archives[0]


def unpack(archive: Path, model_dir: Path) -> Path:
    """Extract model.tar.gz as SageMaker does into /opt/ml/model; check the model and entry point are there."""
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        unsafe = [m.name for m in members if m.name.startswith("/") or ".." in Path(m.name).parts or m.issym()]
        if unsafe:
            raise ModelFormatError(f"{archive.name} has entries outside the model directory: {unsafe[:3]}")
        tar.extractall(model_dir, members=[m for m in members if m.isfile() or m.isdir()])  # noqa: S202 - checked
    if not (model_dir / MODEL_FILE).is_file():
        raise ModelFormatError(f"{archive.name} has no {MODEL_FILE} at its root")
    if not (model_dir / CODE_DIR / ENTRY_POINT).is_file():
        raise ModelFormatError(f"{archive.name} has no {CODE_DIR}/{ENTRY_POINT}: it was not packaged with its code")
    return model_dir


@contextmanager
def entry_point(code_dir: Path) -> Iterator[ModuleType]:
    """Import code/inference.py with code/ first on sys.path (its siblings win), then forget them again."""
    before = set(sys.modules)
    sys.path.insert(0, str(code_dir))
    try:
        spec = importlib.util.spec_from_file_location("inference", code_dir / ENTRY_POINT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(code_dir))
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(code_dir)):
                del sys.modules[name]


def serve(module: Any, model: Any, records: list[str]) -> np.ndarray:
    """Predictions for raw CSV records, through the entry point's hooks, BATCH_ROWS records per request."""
    predictions: list[float] = []
    for start in range(0, len(records), BATCH_ROWS):
        body = "\n".join(records[start : start + BATCH_ROWS]).encode("utf-8")
        data = module.input_fn(body, CSV)
        payload, content_type = module.output_fn(module.predict_fn(data, model), CSV)
        if content_type != CSV:
            raise ModelFormatError(f"output_fn answered {content_type} to Accept: {CSV}")
        predictions.extend(float(line) for line in payload.splitlines() if line.strip())
    return np.asarray(predictions, dtype=float)


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


def read_test_records(path: Path) -> tuple[np.ndarray, list[str]]:
    """Held-out rows (CSV, no header, target first, then the raw record) -> (target, raw CSV records)."""
    files = sorted(p for p in path.rglob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no test CSV found under {path}")
    frame = pd.concat([pd.read_csv(f, header=None, dtype=str, keep_default_na=False) for f in files], ignore_index=True)
    target = frame.iloc[:, 0].astype(float).to_numpy()
    records = [",".join(row) for row in frame.iloc[:, 1:].itertuples(index=False, name=None)]
    return target, records


def evaluate_artifact(archive: Path, y_true: np.ndarray, records: list[str], workdir: Path) -> dict[str, Any]:
    """Unpack the artifact, serve the records through its entry point, build the evaluation.json document."""
    model_dir = unpack(archive, workdir / "model")
    with entry_point(model_dir / CODE_DIR) as module:
        model = module.model_fn(str(model_dir))
        predictions = serve(module, model, records)
    return {"regression_metrics": regression_metrics(y_true, predictions), "test_rows": int(len(y_true))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="/opt/ml/processing/model")
    parser.add_argument("--test-dir", default="/opt/ml/processing/test")
    parser.add_argument("--output-dir", default="/opt/ml/processing/evaluation")
    args = parser.parse_args(argv)
    y_true, records = read_test_records(Path(args.test_dir))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            report = evaluate_artifact(find_archive(Path(args.model_dir)), y_true, records, Path(tmp))
        except (ModelFormatError, tarfile.TarError, OSError) as error:
            print(f"evaluate: cannot load the model: {error}", file=sys.stderr)
            return 2
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "evaluation.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    metrics = report["regression_metrics"]
    print(f"evaluate: test MSE {metrics['mse']['value']:.4f}, RMSE {metrics['rmse']['value']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
