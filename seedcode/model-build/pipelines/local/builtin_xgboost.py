"""What the SageMaker built-in XGBoost algorithm does with a training job, in-process.

Mirrors the container's algorithm mode for CSV channels: the first column is the label,
`train` and optional `validation` channels, `num_round` boosting rounds with optional
`early_stopping_rounds` on the validation channel, and the booster saved with
`save_model` as `xgboost-model` (UBJSON for 3.x), all rounds kept.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL_FILE = "xgboost-model"
# Image tag -> the xgboost release that container runs (documented in its Dockerfile).
CONTAINER_RELEASES = {"3.0-5": "3.0.5"}
# Hyperparameters the container consumes itself rather than passing to xgboost.
_CONTAINER_ONLY = {"num_round", "early_stopping_rounds", "_tuning_objective_metric", "save_model_on_termination"}
_REJECTED = {"silent": "containers 1.7-1 and later reject 'silent'; use 'verbosity' (0-3) instead"}


class TrainingError(ValueError):
    """The training job cannot run as defined; the message names the setting to fix."""


def image_tag(image_uri: str) -> str:
    """`...amazonaws.com/sagemaker-xgboost:3.0-5` -> `3.0-5` ('' when it is not the built-in XGBoost image)."""
    repository, _, tag = image_uri.rpartition(":")
    return tag if repository.rsplit("/", 1)[-1] == "sagemaker-xgboost" else ""


def check_release(image_uri: str) -> None:
    """Fail unless the installed xgboost is the release the definition's container runs."""
    import xgboost as xgb

    tag = image_tag(image_uri)
    if not tag:
        raise TrainingError(f"local training supports only the built-in XGBoost image, not {image_uri}")
    expected = CONTAINER_RELEASES.get(tag)
    if expected is None:
        raise TrainingError(
            f"no known xgboost release for container {tag}; local runs support {sorted(CONTAINER_RELEASES)}"
        )
    if xgb.__version__ != expected:
        raise TrainingError(
            f"container {tag} runs xgboost {expected} but xgboost {xgb.__version__} is installed; "
            f"install xgboost=={expected} so the model file has the same format"
        )


def _typed(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def split_hyperparameters(hyperparameters: Mapping[str, str]) -> tuple[dict[str, Any], int, int | None]:
    """Definition hyperparameters (strings) -> (xgboost params, num_round, early_stopping_rounds)."""
    for name, reason in _REJECTED.items():
        if name in hyperparameters:
            raise TrainingError(f"hyperparameter {name!r}: {reason}")
    if "num_round" not in hyperparameters:
        raise TrainingError("hyperparameter 'num_round' is required by the built-in XGBoost algorithm")
    params = {k: _typed(str(v)) for k, v in hyperparameters.items() if k not in _CONTAINER_ONLY}
    params.setdefault("verbosity", 0)
    num_round = int(hyperparameters["num_round"])
    early = hyperparameters.get("early_stopping_rounds")
    return params, num_round, int(early) if early not in (None, "") else None


def read_channel(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """CSV channel (file or directory, no header, label first) -> (labels, features)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise TrainingError(f"channel {path.name!r} has no files")
    values = pd.concat([pd.read_csv(f, header=None) for f in files], ignore_index=True).to_numpy(dtype=float)
    return values[:, 0], values[:, 1:]


def train(
    hyperparameters: Mapping[str, str],
    train_rows: tuple[np.ndarray, np.ndarray],
    validation_rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """Train a Booster the way the container does."""
    import xgboost as xgb

    params, num_round, early = split_hyperparameters(hyperparameters)
    dtrain = xgb.DMatrix(train_rows[1], label=train_rows[0])
    evals = [(dtrain, "train")]
    if validation_rows is not None:
        evals.append((xgb.DMatrix(validation_rows[1], label=validation_rows[0]), "validation"))
    elif early is not None:
        raise TrainingError("early_stopping_rounds needs a 'validation' channel")
    return xgb.train(
        params, dtrain, num_boost_round=num_round, evals=evals, early_stopping_rounds=early, verbose_eval=False
    )


def model_tarball(booster: Any, workdir: Path) -> bytes:
    """model.tar.gz bytes holding `xgboost-model` saved as the container saves it."""
    model_path = workdir / MODEL_FILE
    booster.save_model(str(model_path.with_suffix(".ubj")))
    model_path.with_suffix(".ubj").rename(model_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(model_path, arcname=MODEL_FILE)
    return buffer.getvalue()
