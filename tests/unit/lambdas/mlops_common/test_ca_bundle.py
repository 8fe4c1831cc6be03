"""CA bundle: "" means public CAs; an S3 PEM is downloaded once into the temp dir."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from mlops_common import ca_bundle
from mlops_common.errors import ConfigError

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class FakeS3:
    def __init__(self, body: bytes | None) -> None:
        self.body, self.calls = body, 0

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.calls += 1
        if self.body is None:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "m"}}, "GetObject")
        return {"Body": io.BytesIO(self.body)}


def test_empty_uri_means_public_cas() -> None:
    assert ca_bundle.ssl_verify(FakeS3(None), "", "X") is True


def test_bundle_is_downloaded_once_and_passed_as_a_path() -> None:
    s3 = FakeS3(PEM)
    path = ca_bundle.ssl_verify(s3, "s3://b/ca.pem", "X")
    assert isinstance(path, str) and Path(path).read_bytes() == PEM
    assert ca_bundle.ssl_verify(s3, "s3://b/ca.pem", "X") == path
    assert s3.calls == 1


def test_missing_or_non_pem_bundle_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot read CA bundle s3://b/ca.pem \(NoSuchKey\): check X"):
        ca_bundle.ssl_verify(FakeS3(None), "s3://b/ca.pem", "X")
    with pytest.raises(ConfigError, match="not a PEM"):
        ca_bundle.ssl_verify(FakeS3(b"hello"), "s3://b/other.pem", "X")


def test_different_bundles_behind_one_uri_never_share_a_file() -> None:
    """Two processes (test workers, or containers sharing /tmp) with different CAs at the same URI."""
    first = ca_bundle.ssl_verify(FakeS3(PEM), "s3://b/ca.pem", "X")
    ca_bundle.clear_cache()
    other = PEM.replace(b"-----END CERTIFICATE-----", b"AA==\n-----END CERTIFICATE-----")
    second = ca_bundle.ssl_verify(FakeS3(other), "s3://b/ca.pem", "X")
    assert isinstance(first, str) and isinstance(second, str) and first != second
    assert Path(first).read_bytes() == PEM and Path(second).read_bytes() == other
