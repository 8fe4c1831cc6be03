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


def test_processes_sharing_tmp_never_read_each_others_bundle_at_the_same_uri() -> None:
    """Two containers (or test workers) with one /tmp and different bundles behind one URI."""
    other = PEM.replace(b"MIIB", b"MIIC")
    ca_bundle.clear_cache()
    first = ca_bundle.ssl_verify(FakeS3(PEM), "s3://b/shared.pem", "X")
    ca_bundle.clear_cache()  # the other process has its own cache
    second = ca_bundle.ssl_verify(FakeS3(other), "s3://b/shared.pem", "X")
    assert isinstance(first, str) and isinstance(second, str)
    assert Path(first).read_bytes() == PEM and Path(second).read_bytes() == other


def test_missing_or_non_pem_bundle_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot read CA bundle s3://b/ca.pem \(NoSuchKey\): check X"):
        ca_bundle.ssl_verify(FakeS3(None), "s3://b/ca.pem", "X")
    with pytest.raises(ConfigError, match="not a PEM"):
        ca_bundle.ssl_verify(FakeS3(b"hello"), "s3://b/other.pem", "X")
