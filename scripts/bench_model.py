"""Model quality benchmark of the model-build seed on the Abalone data.

Runs the seed's own pipeline logic on 20 fixed split seeds: preprocess -> built-in XGBoost
training as the local runner reproduces the container (its hyperparameter rules, early stopping
keeping the best iteration) -> model.tar.gz packaged with the inference entry point -> evaluate,
which sends the raw test records through that entry point as the endpoint would. The AWS sample's
settings (its hyperparameters on its feature set: the raw measurements and one-hot sex) are scored
on the same splits with the booster directly (the entry point computes the seed's features). Then
it times one full `run-pipeline --local` against an in-process moto server.
The last line is machine-comparable:
    bench: mean_test_mse=... sample_mse=... ratio=... splits=20 pipeline_seconds=...
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from scripts.seed_packages import MODEL_BUILD_SEED, import_seed_package

SPLIT_SEEDS = tuple(range(20))
SAMPLE_FEATURES = 10  # the AWS sample's columns: 7 measurements + one-hot sex (3)


def _seed_modules() -> tuple[Any, Any, Any, Any]:
    import_seed_package(MODEL_BUILD_SEED, "pipelines")
    from pipelines.abalone import evaluate, hyperparameters, preprocess
    from pipelines.local import builtin_xgboost

    return preprocess, evaluate, hyperparameters, builtin_xgboost


def _package(booster: Any, workdir: Path) -> Path:
    """model.tar.gz as the pipeline's package step writes it: the model and the model code."""
    _, _, _, xgb_local = _seed_modules()
    from pipelines.abalone import package_model, pipeline

    trained = workdir / "trained.tar.gz"
    trained.write_bytes(xgb_local.model_tarball(booster, workdir))
    code = [pipeline.BASE_DIR / name for name in pipeline.MODEL_CODE]
    packaged = workdir / "model.tar.gz"
    packaged.write_bytes(package_model.package(package_model.read_model(trained), code))
    return packaged


def _rows(frame: Any, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    values = frame.to_numpy(dtype=float)
    features = values[:, 1:] if n_features is None else values[:, 1 : 1 + n_features]
    return values[:, 0], features


def test_metrics(
    splits: dict[str, Any], hyperparameters: dict[str, str], n_features: int | None = None
) -> dict[str, Any]:
    """Train on train (+validation for early stopping); score the raw test records.

    The seed's model (n_features None) is packaged and served through its entry point; a model on
    the first n_features columns is scored with the booster on the engineered test features.
    """
    preprocess, evaluate, _, xgb_local = _seed_modules()
    booster = xgb_local.train(
        hyperparameters, _rows(splits["train"], n_features), _rows(splits["validation"], n_features)
    )
    test = splits["test"]
    y_test = test[preprocess.TARGET].to_numpy(dtype=float)
    if n_features is None:
        records = [",".join(map(str, row)) for row in test.iloc[:, 1:].itertuples(index=False, name=None)]
        with tempfile.TemporaryDirectory() as tmp:
            report = evaluate.evaluate_artifact(_package(booster, Path(tmp)), y_test, records, Path(tmp))
        return dict(report["regression_metrics"])
    import xgboost as xgb

    _, x_test = _rows(preprocess.to_model_frame(test), n_features)
    return dict(evaluate.regression_metrics(y_test, booster.predict(xgb.DMatrix(x_test))))


def summarize(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def time_local_pipeline(data: Path) -> float:
    """Wall time of one `run-pipeline --local` on `data` against an in-process moto server."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://{host}:{port}",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - moto accepts any key
            SAGEMAKER_EXECUTION_ROLE_ARN="arn:aws:iam::123456789012:role/bench",
            ARTIFACT_BUCKET="bench-artifacts",
            MODEL_PACKAGE_GROUP_NAME="bench-group",
            SAGEMAKER_PROJECT_NAME="bench",
            SAGEMAKER_PROJECT_ID="p-bench",
        )
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bench-artifacts")
        boto3.client("sagemaker", region_name="us-east-1").create_model_package_group(
            ModelPackageGroupName="bench-group"
        )
        from pipelines.run_pipeline import run_pipeline

        with tempfile.TemporaryDirectory() as workdir:
            started = time.perf_counter()
            code = run_pipeline(
                [
                    "--local",
                    "--input-data", str(data),
                    "--workdir", workdir,
                    "--artifacts-dir", workdir,
                    "--report-dir", workdir,
                ]
            )
            elapsed = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"the local pipeline run failed with exit code {code}")
        return elapsed
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/data/abalone.csv"), help="raw Abalone CSV"
    )
    parser.add_argument("--skip-pipeline", action="store_true", help="do not time a full local pipeline run")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"bench_model: {args.data} not found; pass --data PATH to the Abalone CSV", file=sys.stderr)
        return 2
    preprocess, _, hp, _ = _seed_modules()
    import pandas as pd

    raw = pd.read_csv(args.data, header=None)
    ours: dict[str, list[float]] = {"mse": [], "rmse": []}
    sample: dict[str, list[float]] = {"mse": [], "rmse": []}
    for seed in SPLIT_SEEDS:
        splits = preprocess.preprocess(raw, seed=seed)
        for store, params, n_features in ((ours, hp.DEFAULT, None), (sample, hp.AWS_SAMPLE, SAMPLE_FEATURES)):
            metrics = test_metrics(splits, params, n_features)
            store["mse"].append(metrics["mse"]["value"])
            store["rmse"].append(metrics["rmse"]["value"])

    print(f"{'settings':<22}{'test MSE mean':>14}{'std':>8}{'test RMSE mean':>16}{'std':>8}")
    for label, store in (("seed (this pipeline)", ours), ("AWS sample", sample)):
        mse, mse_sd = summarize(store["mse"])
        rmse, rmse_sd = summarize(store["rmse"])
        print(f"{label:<22}{mse:>14.3f}{mse_sd:>8.3f}{rmse:>16.3f}{rmse_sd:>8.3f}")
    mean_mse, sample_mse = summarize(ours["mse"])[0], summarize(sample["mse"])[0]
    print(f"ratio (seed / sample) {mean_mse / sample_mse:.3f}; worst seed split MSE {max(ours['mse']):.3f}")

    seconds = math.nan
    if not args.skip_pipeline:
        try:
            seconds = time_local_pipeline(args.data.resolve())
            print(f"one local pipeline run: {seconds:.1f} s")
        except ImportError as error:
            print(f"one local pipeline run: skipped ({error}; install seedcode/model-build/requirements.txt)")
    print(
        f"bench: mean_test_mse={mean_mse:.3f} sample_mse={sample_mse:.3f} ratio={mean_mse / sample_mse:.3f} "
        f"splits={len(SPLIT_SEEDS)} pipeline_seconds={seconds:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
