"""Helpers for tests that need a GitLab: a `standin` context manager, a pytest fixture, a fast-failing
python-gitlab client, a project seeded with files, and a URL where nothing listens.

    from scripts.gitlab_standin.testing import gitlab_standin  # noqa: F401  (a pytest fixture)

    def test_x(gitlab_standin):
        gl = client(gitlab_standin)
        gitlab_standin.add_fault(r"/projects$", 429, method="POST", retry_after=1)
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import gitlab
import pytest

from .server import Standin, start_standin

DEFAULT_GROUP = "ml-team"


@contextmanager
def standin(**kwargs: Any) -> Iterator[Standin]:
    """A running stand-in for the block (arguments as `start_standin`; groups default to ml-team)."""
    kwargs.setdefault("groups", [DEFAULT_GROUP])
    server = start_standin(**kwargs)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gitlab_standin() -> Iterator[Standin]:
    """A fresh stand-in per test, with the group `ml-team`; no pipeline runner."""
    with standin() as server:
        yield server


def client(server: Standin, **kwargs: Any) -> gitlab.Gitlab:
    """python-gitlab bound to the stand-in, with a timeout; pass retry_transient_errors=True etc."""
    kwargs.setdefault("timeout", 10)
    return gitlab.Gitlab(server.url, private_token=server.token, **kwargs)


def closed_port_url() -> str:
    """http://127.0.0.1:<port> where nothing listens: for "GitLab unreachable" tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def seed_project(
    server: Standin,
    path_with_namespace: str,
    files: Mapping[str, str | bytes] | None = None,
    **project: Any,
) -> int:
    """Create a project (its group too) with `files` in one commit on its default branch; its id.

    Goes through the backend directly, so faults and the request log are untouched.
    """
    namespace, _, path = path_with_namespace.rpartition("/")
    backend = server.backend
    ns_id = backend.create_group(namespace).id if namespace else None
    created = backend.create_project(name=project.pop("name", path), path=path, namespace_id=ns_id, **project)
    if files:
        from .gitrepo import FileAction

        actions = [
            FileAction("create", name, content if isinstance(content, bytes) else content.encode())
            for name, content in files.items()
        ]
        backend.commit(created, branch=created.default_branch, message="Seed", actions=actions)
    return created.id


def with_token(url: str, token: str, username: str = "oauth2") -> str:
    """A clone URL carrying HTTP Basic credentials, as GitLab documents for tokens (tests only: git keeps
    the URL in .git/config)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{username}:{token}@{rest}"


def b64(data: bytes) -> str:
    """Base64 text for a commit action with encoding "base64"."""
    return base64.b64encode(data).decode("ascii")
