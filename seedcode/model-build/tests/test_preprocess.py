from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from support import abalone_like

from pipelines.abalone import features, preprocess


def test_model_frame_has_target_first_then_exactly_the_feature_columns():
    frame = preprocess.to_model_frame(preprocess.parse_raw(abalone_like(20)))
    assert list(frame.columns) == [preprocess.TARGET, *preprocess.FEATURE_COLUMNS]
    sex_columns = [f"sex_{v}" for v in preprocess.SEX_VALUES]
    assert (frame[sex_columns].sum(axis=1) == 1).all()


def test_one_hot_matches_the_raw_sex_value():
    raw = abalone_like(6)
    frame = preprocess.to_model_frame(preprocess.parse_raw(raw))
    for index, sex in enumerate(raw[0]):
        assert frame.loc[index, f"sex_{sex}"] == 1.0


def test_derived_ratios_are_zero_rather_than_infinite_when_a_weight_is_zero():
    raw = abalone_like(5)
    raw.iloc[0, 4] = 0.0  # whole weight
    frame = preprocess.to_model_frame(preprocess.parse_raw(raw))
    assert frame.loc[0, "shucked_ratio"] == 0.0
    assert frame.notna().all().all()


def test_split_is_70_15_15_disjoint_and_reproducible_by_seed():
    frame = preprocess.to_model_frame(preprocess.parse_raw(abalone_like(200)))
    first = preprocess.split_frame(frame, seed=3)
    again = preprocess.split_frame(frame, seed=3)
    other = preprocess.split_frame(frame, seed=4)
    assert [len(first[s]) for s in preprocess.SPLITS] == [140, 30, 30]
    for name in preprocess.SPLITS:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert not first["test"].equals(other["test"])
    rows = pd.concat(first.values()).round(9).drop_duplicates()
    assert len(rows) == len(frame.round(9).drop_duplicates())


def test_wrong_column_count_is_rejected_with_the_expected_columns():
    with pytest.raises(preprocess.DataError, match="expected 9 columns"):
        preprocess.parse_raw(abalone_like(5).iloc[:, :8])


def test_unknown_sex_and_non_numeric_values_are_rejected_by_name():
    raw = abalone_like(5)
    raw.iloc[1, 0] = "X"
    with pytest.raises(preprocess.DataError, match="'sex' has unknown values"):
        preprocess.parse_raw(raw)
    raw = abalone_like(5)
    raw.iloc[2, 3] = "n/a"
    with pytest.raises(preprocess.DataError, match="'height'"):
        preprocess.parse_raw(raw)


def test_main_reads_the_input_dir_ignoring_the_code_subdir_and_writes_headerless_splits(tmp_path: Path):
    input_dir = tmp_path / "input"
    (input_dir / "code").mkdir(parents=True)
    (input_dir / "code" / "preprocess.py").write_text("print('not data')\n")
    abalone_like(100).to_csv(input_dir / "abalone.csv", header=False, index=False)
    assert preprocess.main(["--input-dir", str(input_dir), "--output-dir", str(tmp_path), "--seed", "1"]) == 0
    train_rows = pd.read_csv(tmp_path / "train" / "train.csv", header=None)
    assert train_rows.shape == (70, 1 + len(preprocess.FEATURE_COLUMNS))
    test_rows = pd.read_csv(tmp_path / "test" / "test.csv", header=None)
    assert test_rows.shape == (15, 1 + 8)  # target, then the raw record a client sends
    assert set(test_rows[1]) <= set(preprocess.SEX_VALUES)


def test_train_and_validation_are_features_and_test_is_raw_records_of_disjoint_abalones():
    splits = preprocess.preprocess(abalone_like(100), seed=5)
    assert list(splits["train"].columns) == [preprocess.TARGET, *preprocess.FEATURE_COLUMNS]
    assert list(splits["test"].columns) == [preprocess.TARGET, *features.RAW_COLUMNS]
    engineered_test = preprocess.to_model_frame(splits["test"])
    lengths = set(splits["train"]["length"].round(9)) | set(splits["validation"]["length"].round(9))
    assert not lengths & set(engineered_test["length"].round(9))


def test_main_reports_bad_data_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    assert preprocess.main(["--input-dir", str(bad), "--output-dir", str(tmp_path)]) == 2
    assert "expected 9 columns" in capsys.readouterr().err
