"""Defence in depth: no secret reaches a log record, whoever logs it and at whatever level.

The code never logs secrets on purpose; this catches accidents (a library echoing a header, an
exception quoting a value). Three layers, all at record creation so every handler is covered:
- registered secret values (tokens and keys once read) are replaced by ***;
- values that look like secrets before anyone knows them are replaced too: a Secrets Manager
  ``"SecretString"`` in a response body, ``PRIVATE-TOKEN``/``Authorization``/``X-Amz-Security-Token``
  headers, ``token`` fields and ``token=`` form values;
- the AWS SDK and HTTP libraries (botocore, boto3, s3transfer, urllib3, requests, python-gitlab),
  whose DEBUG output prints request headers and response bodies, never log below WARNING, whatever
  LOG_LEVEL says.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

REDACTED = "***"
_MIN_SECRET_LENGTH = 4
CHATTY_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "gitlab")
_SHAPES = (
    # JSON bodies, also inside a bytes repr: a value ends at the first quote no backslash escapes
    re.compile(r'("(?:SecretString|token|SecretAccessKey|SessionToken)"\s*:\s*")((?:[^"]|(?<=\\)")*)(")'),
    re.compile(r"('(?:SecretString|token|SecretAccessKey|SessionToken)'\s*:\s*')([^']*)(')"),
    # header values in dict reprs ('Name': 'value' or b'value') and in raw header lines (Name: value)
    re.compile(
        r"""((?:PRIVATE-TOKEN|Private-Token|Authorization|X-Amz-Security-Token|JOB-TOKEN)'\s*:\s*b?')([^']*)(')"""
    ),
    re.compile(
        r"""((?:PRIVATE-TOKEN|Private-Token|Authorization|X-Amz-Security-Token|JOB-TOKEN)"\s*:\s*b?")([^"]*)(")"""
    ),
    re.compile(
        r"(^|\n)((?:PRIVATE-TOKEN|Private-Token|Authorization|X-Amz-Security-Token|JOB-TOKEN):\s*)([^\r\n]*)"
    ),
    # form bodies: token=...&
    re.compile(r"(\btoken=)([^&\s'\"]+)()"),
)
_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def register_secret(value: str) -> None:
    """Remember a secret value so log records never show it."""
    if len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret, and everything shaped like one, replaced by ***."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for shape in _SHAPES[:4] + _SHAPES[5:]:
        text = shape.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    return _SHAPES[4].sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)


def quiet_libraries() -> None:
    """Keep the SDK and HTTP libraries at WARNING or above (their DEBUG shows headers and bodies)."""
    for name in CHATTY_LIBRARIES:
        library = logging.getLogger(name)
        if library.getEffectiveLevel() < logging.WARNING or library.level < logging.WARNING:
            library.setLevel(logging.WARNING)


def install() -> None:
    """Wrap the log record factory and quiet the chatty libraries (idempotent)."""
    global _installed
    quiet_libraries()
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string must not break logging
        message = str(record.msg)
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        exc_text = logging.Formatter().formatException(record.exc_info)
        if redact(exc_text) != exc_text:
            record.exc_info, record.exc_text = None, redact(exc_text)
