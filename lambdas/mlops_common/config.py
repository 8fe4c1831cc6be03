"""Read settings from a mapping (custom resource properties or the environment) with readable errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from mlops_common.errors import ConfigError


class Settings:
    """Typed, validated access to string settings; every error names the setting and the fix."""

    def __init__(self, values: Mapping[str, object], source: str) -> None:
        self._values = values
        self._source = source

    def _raw(self, key: str) -> str | None:
        value = self._values.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self._source} {key} must be a string, got {type(value).__name__}")
        return value.strip()

    def required(self, key: str) -> str:
        value = self._raw(key)
        if not value:
            raise ConfigError(f"{self._source} {key} is missing or empty: set it")
        return value

    def optional(self, key: str, default: str = "") -> str:
        value = self._raw(key)
        return value if value else default

    def choice(self, key: str, allowed: Iterable[str], default: str | None = None) -> str:
        options = tuple(allowed)
        value = self._raw(key) or default
        if value not in options:
            raise ConfigError(f"{self._source} {key} is {value!r}: expected one of {', '.join(options)}")
        return value

    def https_url(self, key: str) -> str:
        """An https:// base URL without trailing slash."""
        value = self.required(key).rstrip("/")
        parts = urlsplit(value)
        if not parts.hostname or parts.scheme != "https":
            raise ConfigError(f"{self._source} {key} is {value!r}: it must be an https:// URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(f"{self._source} {key} must be a plain server URL without credentials or query")
        return value

    def s3_uri(self, key: str) -> str:
        """An optional s3://bucket/key URI; "" when unset."""
        value = self.optional(key)
        if value:
            parse_s3_uri(value, f"{self._source} {key}")
        return value


def parse_s3_uri(uri: str, what: str) -> tuple[str, str]:
    """Split s3://bucket/key into (bucket, key)."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise ConfigError(f"{what} is {uri!r}: expected s3://bucket/key")
    return parts.netloc, key
