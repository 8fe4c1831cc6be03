"""Test data and constants shared by the seed's tests."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import requests

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


def use_fresh_moto(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Reset moto; boto3 in this process and in subprocesses talks only to it."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10)
    for key in list(os.environ):
        if key.startswith("AWS_") or key.startswith("SAGEMAKER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    return moto_server
