"""The one feature module: raw records in, the model's feature rows out."""

from __future__ import annotations

import numpy as np
import pytest
from support import abalone_like

from pipelines.abalone import features, preprocess


def raw_lines(rows: int = 6) -> list[str]:
    return [",".join(str(v) for v in row) for row in abalone_like(rows).iloc[:, :8].itertuples(index=False, name=None)]


def test_serving_features_equal_the_training_features_of_the_same_abalones():
    raw = abalone_like(40)
    trained_on = preprocess.to_model_frame(preprocess.parse_raw(raw)).iloc[:, 1:].to_numpy()
    served = features.features_from_csv("\n".join(raw_lines(40)))
    np.testing.assert_array_equal(served, trained_on)
    assert served.shape == (40, len(features.FEATURE_COLUMNS))


def test_sex_is_case_and_space_insensitive_and_blank_lines_are_skipped():
    line = raw_lines(1)[0]
    sex, rest = line.split(",", 1)
    text = f"\n {sex.lower()} ,{rest}\n\n{line}\n"
    rows = features.features_from_csv(text)
    np.testing.assert_array_equal(rows[0], rows[1])


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("0.4,0.3,0.1,0.5,0.2,0.1,0.15", "record 1: expected 8 values"),  # the 7 numbers without sex
        ("M,0.4,0.3,0.1,0.5,0.2,0.1,0.15,9", "record 1: expected 8 values"),  # with the target
        ("X,0.4,0.3,0.1,0.5,0.2,0.1,0.15", "sex 'X' is not one of F, I, M"),
        ("M,0.4,0.3,tall,0.5,0.2,0.1,0.15", "height 'tall' is not a number"),
        ("M,0.4,0.3,,0.5,0.2,0.1,0.15", "height '' is not a number"),
        ("M,0.4,0.3,nan,0.5,0.2,0.1,0.15", "height 'nan' is not a finite number"),
        ("", "no records"),
    ],
)
def test_a_malformed_record_is_refused_with_the_record_and_column(record, message):
    with pytest.raises(features.RecordError, match=message):
        features.features_from_csv(record)


def test_the_second_bad_line_is_named():
    good = raw_lines(1)[0]
    with pytest.raises(features.RecordError, match="record 2:"):
        features.features_from_csv(f"{good}\n1,2,3")
