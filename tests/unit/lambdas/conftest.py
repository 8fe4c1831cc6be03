"""Fixtures for the Lambda unit tests: a fake GitLab over `responses`, no real retry sleeps, clean caches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses
from mlops_common import ca_bundle, secrets
from mlops_common.gitlab_client import GitLab, GitLabSettings

from tests.unit.lambdas.helpers import GITLAB, TOKEN


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def gl() -> GitLab:
    """The real adapter (python-gitlab underneath) with short waits so retry tests stay fast."""
    settings = GitLabSettings(
        url=GITLAB, token_source="gitlab-token", timeout=5, max_retries=2, max_retry_wait=3
    )
    return GitLab(settings, TOKEN)


@pytest.fixture(autouse=True)
def _clean_caches() -> Iterator[None]:
    secrets.clear_cache()
    ca_bundle.clear_cache()
    yield
    secrets.clear_cache()
    ca_bundle.clear_cache()


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """python-gitlab's retry waits, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr("gitlab.utils.time.sleep", waits.append)
    return waits
