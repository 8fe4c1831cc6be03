"""Optional private CA bundle for self-managed GitLab: fetched from S3 once per container into /tmp."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops_common.config import parse_s3_uri
from mlops_common.errors import ConfigError

_cache: dict[str, str] = {}
_lock = threading.Lock()
_MAX_BYTES = 1024 * 1024


def ssl_verify(s3_client: Any, uri: str, setting: str) -> bool | str:
    """What to pass as requests' `verify`: True (public CAs) or the local path of the bundle at `uri`."""
    if not uri:
        return True
    with _lock:
        if uri in _cache:
            return _cache[uri]
    bucket, key = parse_s3_uri(uri, setting)
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read(_MAX_BYTES + 1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        raise ConfigError(f"cannot read CA bundle {uri} ({code}): check {setting}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot read CA bundle {uri} ({type(exc).__name__}): check {setting}") from None
    if len(body) > _MAX_BYTES or b"-----BEGIN CERTIFICATE-----" not in body:
        raise ConfigError(f"CA bundle {uri} is not a PEM certificate bundle: check {setting}")
    # Named by content and written atomically: a process sharing /tmp never reads another bundle.
    name = "gitlab-ca-" + hashlib.sha256(body).hexdigest()[:16] + ".pem"
    path = Path(tempfile.gettempdir()) / name
    if not path.exists():
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".gitlab-ca-", delete=False) as tmp:
            tmp.write(body)
        Path(tmp.name).replace(path)
    with _lock:
        _cache[uri] = str(path)
    return str(path)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
