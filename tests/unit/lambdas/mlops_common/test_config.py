"""Settings parsing: each bad value is a ConfigError naming the setting and the fix."""

from __future__ import annotations

import pytest
from mlops_common.config import Settings, parse_s3_uri
from mlops_common.errors import ConfigError


def settings(**values: object) -> Settings:
    return Settings(values, "resource property")


def test_required_rejects_missing_and_blank() -> None:
    with pytest.raises(ConfigError, match="resource property GitLabUrl is missing or empty"):
        settings().required("GitLabUrl")
    with pytest.raises(ConfigError, match="missing or empty"):
        settings(GitLabUrl="   ").required("GitLabUrl")


def test_values_are_stripped_and_defaults_apply() -> None:
    assert settings(A=" x ").required("A") == "x"
    assert settings(A="").optional("A", "main") == "main"


def test_non_string_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a string, got int"):
        settings(A=3).required("A")


def test_choice_lists_the_options() -> None:
    assert settings().choice("P", ("retain", "delete"), "retain") == "retain"
    with pytest.raises(ConfigError, match="P is 'purge': expected one of retain, delete"):
        settings(P="purge").choice("P", ("retain", "delete"))


@pytest.mark.parametrize(
    "url", ["https://gitlab.com", "https://git.corp:8443/gitlab/", "https://127.0.0.1:8443"]
)
def test_https_urls_and_local_http_are_accepted(url: str) -> None:
    assert settings(U=url).https_url("U") == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://gitlab.com",
        "http://127.0.0.1:8080",
        "gitlab.com",
        "ftp://x",
        "https://user:pw@gitlab.com",
        "https://g.com/?a=1",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="U "):
        settings(U=url).https_url("U")


def test_s3_uri_parsing() -> None:
    assert parse_s3_uri("s3://bucket/path/ca.pem", "x") == ("bucket", "path/ca.pem")
    assert settings().s3_uri("C") == ""
    with pytest.raises(ConfigError, match="expected s3://bucket/key"):
        settings(C="s3://bucket-only").s3_uri("C")
