"""The Abalone feature code: one raw record in, the model's feature row out.

The only place the features are defined. Preprocessing (training and validation rows) and the
inference entry point (every request the endpoint serves) both call `engineer`, so what the
model was trained on and what it is asked about are computed by the same lines. It ships inside
model.tar.gz (`code/features.py`, next to `code/inference.py`), so it may only use the standard
library and numpy: both the scikit-learn processing image and the XGBoost serving image have them.

A raw record is the UCI Abalone row without its target, in RAW_COLUMNS order:
`sex,length,diameter,height,whole_weight,shucked_weight,viscera_weight,shell_weight`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence

import numpy as np

RAW_COLUMNS = (
    "sex",
    "length",
    "diameter",
    "height",
    "whole_weight",
    "shucked_weight",
    "viscera_weight",
    "shell_weight",
)
MEASUREMENTS = RAW_COLUMNS[1:]
TARGET = "rings"
SEX_VALUES = ("F", "I", "M")
# Shape ratios: the share of the whole weight that is meat, gut and shell, shell weight per
# volume, and the weight lost in shucking. Chosen on validation data (they cut validation MSE
# by about 0.3 against the raw measurements alone).
DERIVED_COLUMNS = ("shucked_ratio", "viscera_ratio", "shell_ratio", "shell_density", "weight_residual")
FEATURE_COLUMNS = (*MEASUREMENTS, *(f"sex_{value}" for value in SEX_VALUES), *DERIVED_COLUMNS)


class RecordError(ValueError):
    """A raw record cannot be turned into features; the message names the record and the column."""


def normalize_sex(value: str) -> str | None:
    """'m ' -> 'M'; None when the value is not one of SEX_VALUES."""
    cleaned = value.strip().upper()
    return cleaned if cleaned in SEX_VALUES else None


def parse_records(text: str) -> tuple[list[str], np.ndarray]:
    """CSV text of raw records (no header, one per line) -> (sex codes, measurements of shape (n, 7)).

    Blank lines are skipped. Every other line must have exactly len(RAW_COLUMNS) values, a known
    sex and finite numbers; the first bad line raises RecordError.
    """
    sexes: list[str] = []
    rows: list[list[float]] = []
    for number, record in enumerate(csv.reader(text.splitlines()), start=1):
        if not record or all(not cell.strip() for cell in record):
            continue
        where = f"record {number}"
        if len(record) != len(RAW_COLUMNS):
            raise RecordError(
                f"{where}: expected {len(RAW_COLUMNS)} values ({','.join(RAW_COLUMNS)}), got {len(record)}"
            )
        sex = normalize_sex(record[0])
        if sex is None:
            raise RecordError(f"{where}: sex {record[0].strip()!r} is not one of {', '.join(SEX_VALUES)}")
        values: list[float] = []
        for column, cell in zip(MEASUREMENTS, record[1:], strict=True):
            try:
                value = float(cell)
            except ValueError:
                raise RecordError(f"{where}: {column} {cell.strip()!r} is not a number") from None
            if not math.isfinite(value):
                raise RecordError(f"{where}: {column} {cell.strip()!r} is not a finite number")
            values.append(value)
        sexes.append(sex)
        rows.append(values)
    if not rows:
        raise RecordError(f"no records: send one CSV line per abalone ({','.join(RAW_COLUMNS)})")
    return sexes, np.asarray(rows, dtype=float)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def engineer(sexes: Sequence[str], measurements: np.ndarray) -> np.ndarray:
    """Validated sex codes and measurements (n, 7), MEASUREMENTS order -> features (n, 15), FEATURE_COLUMNS order."""
    values = np.asarray(measurements, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(MEASUREMENTS) or values.shape[0] != len(sexes):
        raise RecordError(f"expected {len(sexes)} rows of {len(MEASUREMENTS)} measurements, got shape {values.shape}")
    column = {name: values[:, index] for index, name in enumerate(MEASUREMENTS)}
    sex = np.asarray(sexes)
    whole = column["whole_weight"]
    derived = [
        _ratio(column["shucked_weight"], whole),
        _ratio(column["viscera_weight"], whole),
        _ratio(column["shell_weight"], whole),
        _ratio(column["shell_weight"], column["length"] ** 3),
        whole - column["shucked_weight"] - column["viscera_weight"] - column["shell_weight"],
    ]
    one_hot = [(sex == value).astype(float) for value in SEX_VALUES]
    return np.column_stack([values, *one_hot, *derived])


def features_from_csv(text: str) -> np.ndarray:
    """Raw CSV records -> the model's feature rows (what the endpoint predicts on)."""
    return engineer(*parse_records(text))
