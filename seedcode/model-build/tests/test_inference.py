"""The inference entry point's four hooks, as the XGBoost image's script mode calls them."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from support import abalone_like

from pipelines.abalone import features, inference


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.RandomState(0)
    rows = rng.rand(120, len(features.FEATURE_COLUMNS))
    return xgb.train({"max_depth": 2, "verbosity": 0}, xgb.DMatrix(rows, label=rows[:, 0] * 10 + 3), 15)


def records(rows: int) -> str:
    frame = abalone_like(rows).iloc[:, :8]
    return "\n".join(",".join(str(v) for v in row) for row in frame.itertuples(index=False, name=None))


def save(booster: xgb.Booster, kind: str, model_dir: Path) -> Path:
    path = model_dir / inference.MODEL_FILE
    if kind == "pickle":
        path.write_bytes(pickle.dumps(booster))
    elif kind == "binary":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path.write_bytes(bytes(booster.save_raw("deprecated")))
    else:
        path.write_bytes(bytes(booster.save_raw("json" if kind == "json" else "ubj")))
    return path


@pytest.mark.parametrize("kind", ["pickle", "binary", "json", "ubjson"])
def test_model_fn_loads_every_format_the_containers_write(kind, booster, tmp_path):
    save(booster, kind, tmp_path)
    model = inference.model_fn(str(tmp_path))
    data = inference.input_fn(records(5).encode(), "text/csv")
    np.testing.assert_allclose(inference.predict_fn(data, model), booster.predict(xgb.DMatrix(data)), rtol=1e-6)


def test_model_fn_refuses_a_model_that_does_not_take_these_features(tmp_path):
    other = xgb.train({"verbosity": 0}, xgb.DMatrix(np.random.rand(20, 7), label=np.arange(20.0)), 2)
    save(other, "ubjson", tmp_path)
    with pytest.raises(RuntimeError, match="takes 7 features but features.py computes 15"):
        inference.model_fn(str(tmp_path))


def test_raw_records_in_csv_predictions_out_one_per_line(booster, tmp_path):
    save(booster, "ubjson", tmp_path)
    model = inference.model_fn(str(tmp_path))
    prediction = inference.predict_fn(inference.input_fn(records(4), "text/csv; charset=utf-8"), model)
    body, content_type = inference.output_fn(prediction, "text/csv")
    assert content_type == "text/csv"
    assert body.endswith("\n") and len(body.splitlines()) == 4
    np.testing.assert_allclose([float(v) for v in body.splitlines()], prediction)
    body, content_type = inference.output_fn(prediction, "application/json")
    assert content_type == "application/json"
    assert [p["score"] for p in json.loads(body)["predictions"]] == pytest.approx(list(prediction))


@pytest.mark.parametrize(
    ("accept", "chosen"), [("", "text/csv"), ("*/*", "text/csv"), ("application/json, text/csv", "application/json")]
)
def test_accept_negotiation(accept, chosen):
    assert inference.choose_accept(accept) == chosen


def test_client_errors_carry_their_http_status():
    with pytest.raises(inference.UnsupportedContentType) as caught:
        inference.input_fn(b"{}", "application/json")
    assert caught.value.code == 415
    with pytest.raises(inference.BadRecord, match="expected 8 values") as caught:
        inference.input_fn(b"0.4,0.3,0.1,0.5,0.2,0.1,0.15", "text/csv")
    assert caught.value.code == 400
    with pytest.raises(inference.BadRecord, match="not UTF-8"):
        inference.input_fn(b"\xff\xfe", "text/csv")
    with pytest.raises(inference.UnsupportedAccept) as caught:
        inference.output_fn(np.array([1.0]), "application/x-recordio-protobuf")
    assert caught.value.code == 406


def test_the_error_body_is_json_the_client_can_read():
    error = inference.BadRecord("record 1: expected 8 values")
    assert json.loads(error.get_body()) == {"error": "BadRecord", "message": "record 1: expected 8 values"}
    assert ("Content-Type", "application/json") in error.get_headers()
