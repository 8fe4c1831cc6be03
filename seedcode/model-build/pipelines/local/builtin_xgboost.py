"""What the SageMaker built-in XGBoost algorithm does with a training job, in-process.

Reproduces the container's algorithm mode (aws/sagemaker-xgboost-container at commit cb8df91,
image 3.0-5) for CSV channels:

- hyperparameters: the names its validator declares (algorithm_mode/hyperparameter_validation.py,
  ACCEPTED_HYPERPARAMETERS below) and their aliases (learning_rate, min_split_loss, reg_lambda,
  reg_alpha); any other name fails "Extraneous hyperparameter found: <name>", a missing num_round
  "Missing required hyperparameter: num_round" (sagemaker_algorithm_toolkit/hyperparameter_validation.py);
- channels: `train` and optional `validation`, text/csv with the label in the first column;
- early stopping (algorithm_mode/train.py, callback.py): only when early_stopping_rounds, a
  validation channel AND an eval_metric are given; it watches the LAST eval_metric on `validation`,
  maximizing the metrics in XGB_MAXIMIZE_METRICS (constants/xgb_constants.py), and keeps the model
  cut at the best iteration (xgboost's EarlyStopping with save_best=True);
- the model saved with `save_model` as `xgboost-model` (UBJSON for 3.x), in model.tar.gz.

Not reproduced: value ranges of each hyperparameter, distributed and GPU training, k-fold, custom
metrics, checkpoint files (spot interruptions do not happen locally), libsvm/parquet/recordio input.
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
# Declared by the container's hyperparameter validator (see the module docstring for the source).
ACCEPTED_HYPERPARAMETERS = frozenset(
    {
        "_kfold", "_num_cv_round", "_tuning_objective_metric", "aft_loss_distribution",
        "aft_loss_distribution_scale", "alpha", "base_score", "booster", "colsample_bylevel",
        "colsample_bynode", "colsample_bytree", "csv_weights", "deterministic_histogram", "dsplit",
        "early_stopping_rounds", "eta", "eval_metric", "gamma", "grow_policy", "interaction_constraints",
        "lambda", "lambda_bias", "max_bin", "max_delta_step", "max_depth", "max_leaves", "min_child_weight",
        "monotone_constraints", "normalize_type", "nthread", "num_class", "num_parallel_tree", "num_round",
        "objective", "one_drop", "predictor", "prob_buffer_row", "process_type", "rate_drop", "refresh_leaf",
        "sample_type", "sampling_method", "save_model_on_termination", "scale_pos_weight", "seed",
        "sketch_eps", "skip_drop", "subsample", "tree_method", "tweedie_variance_power", "updater",
        "use_dask_gpu_training", "verbosity",
    }
)  # fmt: skip
ALIASES = {"learning_rate": "eta", "min_split_loss": "gamma", "reg_lambda": "lambda", "reg_alpha": "alpha"}
# Metrics early stopping maximizes (constants/xgb_constants.py XGB_MAXIMIZE_METRICS); all others minimize.
MAXIMIZE_METRICS = frozenset(
    {
        "accuracy", "auc", "aucpr", "balanced_accuracy", "f1", "f1_binary", "f1_macro", "map", "ndcg",
        "precision", "r2", "recall", "precision_macro", "precision_micro", "recall_macro", "recall_micro",
    }
)  # fmt: skip
# Hyperparameters the container consumes itself rather than passing to xgboost.
_CONTAINER_ONLY = {
    "num_round",
    "early_stopping_rounds",
    "_tuning_objective_metric",
    "save_model_on_termination",
    "_kfold",
    "_num_cv_round",
    "csv_weights",
}
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


def validate_hyperparameters(hyperparameters: Mapping[str, str]) -> dict[str, str]:
    """Aliases replaced by their names; the container's own errors for unknown or missing ones."""
    for name, reason in _REJECTED.items():
        if name in hyperparameters:
            raise TrainingError(f"Extraneous hyperparameter found: {name} ({reason})")
    named = {ALIASES.get(name, name): str(value) for name, value in hyperparameters.items()}
    extraneous = sorted(set(named) - ACCEPTED_HYPERPARAMETERS)
    if extraneous:
        raise TrainingError(
            f"Extraneous hyperparameter found: {extraneous[0]} (the built-in XGBoost container accepts only the "
            "names its validator declares; see pipelines/local/builtin_xgboost.py)"
        )
    if "num_round" not in named:
        raise TrainingError("Missing required hyperparameter: num_round")
    return named


def split_hyperparameters(hyperparameters: Mapping[str, str]) -> tuple[dict[str, Any], int, int | None]:
    """Definition hyperparameters (strings) -> (xgboost params, num_round, early_stopping_rounds)."""
    named = validate_hyperparameters(hyperparameters)
    params = {k: _typed(v) for k, v in named.items() if k not in _CONTAINER_ONLY}
    params.setdefault("verbosity", 0)
    num_round = int(named["num_round"])
    early = named.get("early_stopping_rounds")
    return params, num_round, int(early) if early not in (None, "") else None


def early_stopping_metric(params: Mapping[str, Any]) -> str | None:
    """The metric the container's early stopping watches: the last eval_metric, if any."""
    metrics = params.get("eval_metric")
    if metrics in (None, ""):
        return None
    return str(metrics).split(",")[-1].strip() or None


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
    """Train a Booster the way the container does (early stopping keeps the best iteration)."""
    import xgboost as xgb

    params, num_round, early = split_hyperparameters(hyperparameters)
    metric = early_stopping_metric(params)
    if isinstance(params.get("eval_metric"), str) and "," in params["eval_metric"]:
        params["eval_metric"] = [m.strip() for m in params["eval_metric"].split(",") if m.strip()]
    dtrain = xgb.DMatrix(train_rows[1], label=train_rows[0])
    evals = [(dtrain, "train")]
    if validation_rows is not None:
        evals.append((xgb.DMatrix(validation_rows[1], label=validation_rows[0]), "validation"))
    callbacks = []
    if early and validation_rows is not None and metric:
        callbacks.append(
            xgb.callback.EarlyStopping(
                rounds=early,
                data_name="validation",
                metric_name=metric,
                maximize=metric in MAXIMIZE_METRICS,
                save_best=True,
            )
        )
    return xgb.train(params, dtrain, num_boost_round=num_round, evals=evals, callbacks=callbacks, verbose_eval=False)


def model_tarball(booster: Any, workdir: Path) -> bytes:
    """model.tar.gz bytes holding `xgboost-model` saved as the container saves it."""
    model_path = workdir / MODEL_FILE
    booster.save_model(str(model_path.with_suffix(".ubj")))
    model_path.with_suffix(".ubj").rename(model_path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(model_path, arcname=MODEL_FILE)
    return buffer.getvalue()
