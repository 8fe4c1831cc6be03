"""Test data and constants shared by the seed's tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/model-build-test"
BUCKET = "model-build-test-artifacts"
GROUP = "model-build-test-group"


def abalone_like(rows: int = 300, seed: int = 7) -> pd.DataFrame:
    """Raw rows in UCI order (sex, 7 measurements, rings) with rings driven by shell weight."""
    rng = np.random.RandomState(seed)
    length = rng.uniform(0.1, 0.8, rows)
    diameter = length * 0.8
    height = length * 0.25
    whole = length**3 * 4 + rng.uniform(0, 0.05, rows)
    shucked, viscera, shell = whole * 0.4, whole * 0.2, whole * 0.3
    rings = np.round(3 + shell * 25 + rng.normal(0, 0.5, rows)).clip(1, 29)
    sex = rng.choice(["M", "F", "I"], rows)
    return pd.DataFrame([sex, length, diameter, height, whole, shucked, viscera, shell, rings]).T
