from __future__ import annotations

import json
import math
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from pipelines.abalone import evaluate


@pytest.fixture(scope="module")
def trained() -> tuple[xgb.Booster, np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    features = rng.rand(80, 4)
    target = features[:, 0] * 10 + 2
    booster = xgb.train({"max_depth": 2, "verbosity": 0}, xgb.DMatrix(features, label=target), 20)
    return booster, target, features


def _write(kind: str, booster: xgb.Booster, path: Path) -> Path:
    if kind == "pickle":
        path.write_bytes(pickle.dumps(booster))
    elif kind == "binary":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path.write_bytes(bytes(booster.save_raw("deprecated")))
    else:
        booster.save_model(str(path.with_suffix(".json" if kind == "json" else ".ubj")))
        path.with_suffix(".json" if kind == "json" else ".ubj").rename(path)
    return path


@pytest.mark.parametrize("kind", ["pickle", "binary", "json", "ubjson"])
def test_every_container_model_format_is_sniffed_and_predicts_like_the_original(kind, trained, tmp_path):
    booster, _, features = trained
    path = _write(kind, booster, tmp_path / "xgboost-model")
    assert evaluate.sniff_model_format(path.read_bytes()[:16]) == kind
    loaded = evaluate.load_booster(path)
    np.testing.assert_allclose(loaded.predict(xgb.DMatrix(features)), booster.predict(xgb.DMatrix(features)), rtol=1e-6)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04zipfile", b"hello world", b"{not json"])
def test_a_file_no_container_writes_fails_with_a_clear_error(content, tmp_path):
    path = tmp_path / "xgboost-model"
    path.write_bytes(content)
    with pytest.raises(evaluate.ModelFormatError, match="model file"):
        evaluate.load_booster(path)


def test_a_pickle_of_something_else_is_rejected(tmp_path):
    path = tmp_path / "xgboost-model"
    path.write_bytes(pickle.dumps({"not": "a booster"}))
    with pytest.raises(evaluate.ModelFormatError, match="not an xgboost Booster"):
        evaluate.load_booster(path)


def test_regression_metrics_match_hand_computed_values():
    metrics = evaluate.regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert metrics["mse"]["value"] == pytest.approx(0.5)
    assert metrics["rmse"]["value"] == pytest.approx(math.sqrt(0.5))
    assert metrics["mae"]["value"] == pytest.approx(0.5)
    assert metrics["r2"]["value"] == pytest.approx(1 - 2 / 5)
    assert metrics["mse"]["standard_deviation"] == pytest.approx(np.std([0, -1, 1, 0]))


def test_main_reads_model_tar_gz_and_writes_the_contract_evaluation_json(trained, tmp_path):
    booster, target, features = trained
    model_dir, test_dir, out_dir = tmp_path / "model", tmp_path / "test", tmp_path / "evaluation"
    model_dir.mkdir()
    test_dir.mkdir()
    model = _write("ubjson", booster, tmp_path / "xgboost-model")
    with tarfile.open(model_dir / "model.tar.gz", "w:gz") as archive:
        archive.add(model, arcname="xgboost-model")
    np.savetxt(test_dir / "test.csv", np.column_stack([target, features]), delimiter=",")
    assert (
        evaluate.main(["--model-dir", str(model_dir), "--test-dir", str(test_dir), "--output-dir", str(out_dir)]) == 0
    )
    report = json.loads((out_dir / "evaluation.json").read_text())
    metrics = report["regression_metrics"]
    assert set(metrics) >= {"mse", "rmse", "mae", "r2"}
    assert {"value", "standard_deviation"} <= set(metrics["mse"])
    expected = float(np.mean((booster.predict(xgb.DMatrix(features)) - target) ** 2))
    assert metrics["mse"]["value"] == pytest.approx(expected)


def test_main_fails_cleanly_when_the_archive_has_no_model(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    other = tmp_path / "readme.txt"
    other.write_text("x")
    with tarfile.open(model_dir / "model.tar.gz", "w:gz") as archive:
        archive.add(other, arcname="readme.txt")
    assert (
        evaluate.main(["--model-dir", str(model_dir), "--test-dir", str(tmp_path), "--output-dir", str(tmp_path)]) == 2
    )
    assert "does not contain xgboost-model" in capsys.readouterr().err
