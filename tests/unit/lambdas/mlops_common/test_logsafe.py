"""Log redaction: a registered secret never reaches a log line, whoever logs it and at any level."""

from __future__ import annotations

import logging

import pytest
from mlops_common import logsafe


def test_registered_secret_is_redacted_in_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logsafe.install()
    logsafe.register_secret("glpat-leaky-0001")
    log = logging.getLogger("any.library")
    with caplog.at_level(logging.DEBUG):
        log.debug("header PRIVATE-TOKEN: %s", "glpat-leaky-0001")
        log.warning("inline glpat-leaky-0001 here")
        try:
            raise RuntimeError("boom glpat-leaky-0001")
        except RuntimeError:
            log.exception("failed")
    text = caplog.text
    assert "glpat-leaky-0001" not in text
    assert text.count(logsafe.REDACTED) >= 3


def test_short_values_are_not_registered() -> None:
    logsafe.register_secret("ab")
    assert logsafe.redact("abc") == "abc"


def test_http_and_gitlab_libraries_stay_above_debug_whatever_the_log_level() -> None:
    import logging

    from mlops_common import logsafe

    for name in ("gitlab", "requests", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    logsafe.install()
    for name in ("gitlab", "requests", "urllib3", "botocore"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
