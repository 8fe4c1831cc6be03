"""Preprocess the Abalone CSV into seeded train/validation/test splits.

Runs inside the SageMaker scikit-learn processing container (and locally under
`run-pipeline --local`), so it only uses the standard library, numpy, pandas and the shared
feature module `features.py` (the step's `model-code` input puts it on PYTHONPATH in the
container). Output files are CSV without a header, target (rings) first:

- train/, validation/: then exactly the model's features, in features.FEATURE_COLUMNS order;
- test/: then the raw record as a client sends it to the endpoint (features.RAW_COLUMNS), so the
  evaluation and the deploy repository's staging test go through the served entry point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

try:  # in the processing container: the step's `model-code` input is on PYTHONPATH
    import features
except ImportError:  # in this repository
    from pipelines.abalone import features  # type: ignore[no-redef]

TARGET = features.TARGET
# UCI order of the raw file (no header): the record, then the target.
RAW_COLUMNS = [*features.RAW_COLUMNS, TARGET]
NUMERIC_COLUMNS = list(features.MEASUREMENTS)
SEX_VALUES = features.SEX_VALUES
FEATURE_COLUMNS = list(features.FEATURE_COLUMNS)
SPLITS = ("train", "validation", "test")
RAW_SPLITS = ("test",)  # written as raw records: what the endpoint is sent
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
DEFAULT_SEED = 42


class DataError(ValueError):
    """The input data cannot be turned into a training set; the message says what to fix."""


def parse_raw(frame: pd.DataFrame) -> pd.DataFrame:
    """Name and type the raw columns; reject rows that are not Abalone-shaped."""
    if frame.shape[1] != len(RAW_COLUMNS):
        raise DataError(
            f"expected {len(RAW_COLUMNS)} columns ({', '.join(RAW_COLUMNS)}) without a header, got {frame.shape[1]}"
        )
    frame = frame.copy()
    frame.columns = RAW_COLUMNS
    given = frame["sex"].astype(str)
    cleaned = given.map(features.normalize_sex)
    unknown = sorted(set(given[cleaned.isna()].str.strip()))
    frame["sex"] = cleaned
    if unknown:
        raise DataError(f"column 'sex' has unknown values {unknown[:5]}; expected one of {list(SEX_VALUES)}")
    for column in [*NUMERIC_COLUMNS, TARGET]:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = int((values.isna() | ~np.isfinite(values.fillna(0.0))).sum())
        if bad:
            raise DataError(f"column {column!r} has {bad} non-numeric, infinite or empty value(s); clean the input")
        frame[column] = values.astype(float)
    if frame.empty:
        raise DataError("the input file has no rows")
    return frame


def to_model_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Target first, then FEATURE_COLUMNS, computed by the shared feature module."""
    values = features.engineer(list(frame["sex"]), frame[NUMERIC_COLUMNS].to_numpy(dtype=float))
    out = pd.DataFrame(values, columns=FEATURE_COLUMNS)
    out.insert(0, TARGET, frame[TARGET].to_numpy())
    return out


def to_raw_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Target first, then the raw record (cleaned sex code, measurements) in features.RAW_COLUMNS order."""
    return frame[[TARGET, *features.RAW_COLUMNS]].reset_index(drop=True)


def split_frame(
    frame: pd.DataFrame, seed: int = DEFAULT_SEED, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, pd.DataFrame]:
    """Shuffle with `seed` and cut into train/validation/test by `fractions` (same seed, same split)."""
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise DataError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    if len(frame) < 3:
        raise DataError(f"need at least 3 rows to split into train/validation/test, got {len(frame)}")
    order = np.random.RandomState(seed).permutation(len(frame))
    n_train = max(1, int(round(fractions[0] * len(frame))))
    n_validation = max(1, int(round(fractions[1] * len(frame))))
    n_train = min(n_train, len(frame) - 2)
    n_validation = min(n_validation, len(frame) - n_train - 1)
    cuts = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_validation],
        "test": order[n_train + n_validation :],
    }
    return {name: frame.iloc[index].reset_index(drop=True) for name, index in cuts.items()}


def preprocess(raw: pd.DataFrame, seed: int = DEFAULT_SEED) -> dict[str, pd.DataFrame]:
    """Raw Abalone rows -> {"train", "validation", "test"}, target first.

    The rows are split first, then train and validation become model frames (features) and test
    stays raw records (see the module docstring).
    """
    splits = split_frame(parse_raw(raw), seed=seed)
    return {
        name: to_raw_frame(frame) if name in RAW_SPLITS else to_model_frame(frame) for name, frame in splits.items()
    }


def read_raw_csv(path: Path) -> pd.DataFrame:
    """Read one file, or the files directly inside a directory (an S3 prefix download), as raw rows.

    Subdirectories are ignored: SageMaker puts the processing code under <input>/code.
    """
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise DataError(f"no input files found under {path}")
    return pd.concat([pd.read_csv(f, header=None) for f in files], ignore_index=True)


def write_splits(splits: dict[str, pd.DataFrame], output_root: Path) -> None:
    """Write <output_root>/<split>/<split>.csv without header or index."""
    for name, frame in splits.items():
        target_dir = output_root / name
        target_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(target_dir / f"{name}.csv", header=False, index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input-dir", default="/opt/ml/processing/input")
    parser.add_argument("--output-dir", default="/opt/ml/processing", help="splits go to <dir>/<split>/")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    try:
        splits = preprocess(read_raw_csv(Path(args.input_dir)), seed=args.seed)
    except DataError as error:
        print(f"preprocess: {error}", file=sys.stderr)
        return 2
    write_splits(splits, Path(args.output_dir))
    sizes = ", ".join(f"{name}={len(frame)}" for name, frame in splits.items())
    print(f"preprocess: wrote {sizes} rows; features {FEATURE_COLUMNS}; raw test records {list(features.RAW_COLUMNS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
