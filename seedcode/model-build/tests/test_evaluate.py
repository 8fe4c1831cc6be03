"""evaluate.py scores the packaged artifact through its own entry point, on raw records."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from support import abalone_like

from pipelines.abalone import evaluate, features, package_model, pipeline, preprocess


@pytest.fixture(scope="module")
def splits() -> dict:
    return preprocess.preprocess(abalone_like(300), seed=1)


@pytest.fixture(scope="module")
def booster(splits) -> xgb.Booster:
    train = splits["train"].to_numpy(dtype=float)
    return xgb.train({"max_depth": 3, "verbosity": 0}, xgb.DMatrix(train[:, 1:], label=train[:, 0]), 30)


def packaged(booster: xgb.Booster, tmp_path: Path) -> Path:
    code = [pipeline.BASE_DIR / name for name in pipeline.MODEL_CODE]
    archive = tmp_path / "packaged" / "model.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(package_model.package(bytes(booster.save_raw("ubj")), code))
    return archive.parent


def test_main_scores_raw_test_records_through_the_entry_point_like_the_booster_itself(splits, booster, tmp_path):
    test_dir, out = tmp_path / "test", tmp_path / "evaluation"
    test_dir.mkdir()
    splits["test"].to_csv(test_dir / "test.csv", header=False, index=False)
    code = evaluate.main(
        ["--model-dir", str(packaged(booster, tmp_path)), "--test-dir", str(test_dir), "--output-dir", str(out)]
    )
    assert code == 0
    report = json.loads((out / "evaluation.json").read_text())
    engineered = features.engineer(list(splits["test"]["sex"]), splits["test"][list(features.MEASUREMENTS)].to_numpy())
    direct = booster.predict(xgb.DMatrix(engineered.astype(np.float32)))
    expected = float(np.mean((direct - splits["test"]["rings"].to_numpy()) ** 2))
    assert report["regression_metrics"]["mse"]["value"] == pytest.approx(expected, rel=1e-9)
    assert report["test_rows"] == len(splits["test"])
    assert not any(name in sys.modules for name in ("inference", "features"))  # the artifact's modules are gone again


def test_an_artifact_without_its_code_fails_cleanly(booster, tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "xgboost-model").write_bytes(bytes(booster.save_raw("ubj")))
    import tarfile

    with tarfile.open(model_dir / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "xgboost-model", arcname="xgboost-model")
    (tmp_path / "test.csv").write_text("10,M,0.4,0.3,0.1,0.5,0.2,0.1,0.15\n")
    assert (
        evaluate.main(
            ["--model-dir", str(model_dir), "--test-dir", str(tmp_path / "test.csv"), "--output-dir", str(tmp_path)]
        )
        == 2
    )
    assert "has no code/inference.py" in capsys.readouterr().err


def test_regression_metrics_match_hand_computed_values():
    metrics = evaluate.regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert metrics["mse"]["value"] == pytest.approx(0.5)
    assert metrics["rmse"]["value"] == pytest.approx(math.sqrt(0.5))
    assert metrics["mae"]["value"] == pytest.approx(0.5)
    assert metrics["r2"]["value"] == pytest.approx(1 - 2 / 5)
    assert metrics["mse"]["standard_deviation"] == pytest.approx(np.std([0, -1, 1, 0]))
