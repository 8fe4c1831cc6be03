"""What both Lambda handlers build the same way: AWS clients, the GitLab deadline and adapter, and the
rule that a GitLab rejection makes the token secret be read again.

The time a handler keeps back at the end of an invocation depends on what it must still do once GitLab
calls stop, so each purpose has one named `Reserve`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config

from mlops_common import secrets
from mlops_common.errors import GitLabAuthError, GitLabNotFound
from mlops_common.gitlab_api import GitLabApi
from mlops_common.gitlab_client import GitLab, GitLabSettings

logger = logging.getLogger(__name__)

# Short timeouts and standard-mode retries: botocore's defaults (60 s reads) outlast the Lambda.
AWS_CONFIG = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"})


class LambdaContext(Protocol):
    """The part of the Lambda context object the runtime reads."""

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class Reserve:
    """Seconds kept after the last GitLab request starts: `fraction` of the time left, within bounds."""

    floor: float
    fraction: float = 0.0
    cap: float | None = None

    def seconds(self, remaining: float) -> float:
        share = remaining * self.fraction
        return max(self.floor, share if self.cap is None else min(self.cap, share))


# A custom resource must still answer CloudFormation (an HTTPS PUT, retried) and log why, so it keeps
# 10% of its time, at least 2 s (crhelper's own timer answers FAILED 0.5 s before the end) and at most
# 15 s. The check-in's core keeps a further share of what is left to remove what a failed Create made.
ANSWER_RESERVE = Reserve(floor=2.0, fraction=0.1, cap=15.0)
# An event handler only logs and raises (Lambda then retries or dead-letters the event).
RAISE_RESERVE = Reserve(floor=2.0)


def aws_client(service: str) -> Any:
    """A boto3 client with the shared timeouts and retries."""
    return boto3.client(service, config=AWS_CONFIG)


def deadline(
    context: LambdaContext | None, reserve: Reserve, now: Callable[[], float] = time.monotonic
) -> float | None:
    """The time.monotonic() after which no GitLab request starts; None without a Lambda context."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return None
    remaining = context.get_remaining_time_in_millis() / 1000.0
    return now() + remaining - reserve.seconds(remaining)


def gitlab(settings: GitLabSettings, token: str | None) -> GitLabApi:
    """The GitLab adapter, typed as the protocol the cores use (mypy checks the adapter fulfils it)."""
    return GitLab(settings, token)


def forget_rejected_token(exc: BaseException, secret_id: str | None) -> bool:
    """On GitLab's 401 (token rejected) or 404 (e.g. a trigger token that was re-created) drop the
    cached secret, so the next invocation reads a rotated one instead of failing until the container
    ends. Returns whether it did."""
    if not secret_id or not isinstance(exc, GitLabAuthError | GitLabNotFound):
        return False
    secrets.forget(secret_id)
    logger.info("GitLab rejected the token or did not find the target: its secret is read again next time")
    return True
