"""What the two Lambda cores need from GitLab: the `GitLabApi` protocol and the values it returns.

The cores depend on this module only, never on python-gitlab: the adapter in `gitlab_client` implements
the protocol over HTTP, and unit tests use an in-memory fake. Every method may raise `errors.GitLabError`
(a taken name is `GitLabRejected`, a missing thing `GitLabNotFound`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Namespace:
    """A group or user namespace; `id` is None for the token owner's own namespace."""

    id: int | None
    full_path: str


@dataclass(frozen=True)
class ProjectInfo:
    id: int
    path_with_namespace: str
    http_url_to_repo: str
    web_url: str
    description: str
    default_branch: str | None
    archived: bool
    topics: tuple[str, ...]

    @classmethod
    def from_api(cls, attrs: Mapping[str, Any]) -> ProjectInfo:
        return cls(
            id=int(attrs["id"]),
            path_with_namespace=str(attrs["path_with_namespace"]),
            http_url_to_repo=str(attrs.get("http_url_to_repo") or ""),
            web_url=str(attrs.get("web_url") or ""),
            description=str(attrs.get("description") or ""),
            default_branch=attrs.get("default_branch") or None,
            archived=bool(attrs.get("archived", False)),
            topics=tuple(str(t) for t in (attrs.get("topics") or attrs.get("tag_list") or ())),
        )


@dataclass(frozen=True)
class Variable:
    """A project CI/CD variable as we want it (or as GitLab has it)."""

    key: str
    value: str = field(repr=False)
    masked: bool = False
    protected: bool = False
    raw: bool = True

    def payload(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "masked": self.masked,
            "protected": self.protected,
            "raw": self.raw,
            "variable_type": "env_var",
        }


@dataclass(frozen=True)
class TreeEntry:
    path: str
    blob_id: str
    mode: str


@dataclass(frozen=True)
class Pipeline:
    id: int
    web_url: str


@dataclass(frozen=True)
class TriggerInfo:
    id: int
    description: str


class GitLabApi(Protocol):
    """Exactly the GitLab operations `seedcode_checkin.core` and `pipeline_trigger.core` call."""

    @property
    def url(self) -> str:
        """The base URL (as configured), stored with a trigger token to bind it to this server."""
        ...

    @property
    def host(self) -> str:
        """host[:port] of the base URL, part of the check-in's physical id."""
        ...

    @property
    def deadline(self) -> float | None:
        """time.monotonic() after which no request starts; None = no limit."""
        ...

    def set_deadline(self, deadline: float | None) -> None: ...

    # the token itself and namespaces
    def token_expiry(self) -> dt.date | None: ...

    def token_owner_namespace(self) -> Namespace: ...

    def group(self, ref: str) -> Namespace: ...

    # projects
    def find_project(self, path_or_id: str | int) -> ProjectInfo | None: ...

    def create_project(
        self, namespace: Namespace, name: str, description: str, topics: Sequence[str]
    ) -> ProjectInfo: ...

    def update_project(self, project_id: int, changes: Mapping[str, Any]) -> None: ...

    def archive_project(self, project_id: int) -> None: ...

    def unarchive_project(self, project_id: int) -> None: ...

    def delete_project(self, project_id: int) -> None: ...

    # CI/CD variables
    def variables(self, project_id: int) -> dict[str, Variable]: ...

    def create_variable(self, project_id: int, variable: Variable) -> None: ...

    def update_variable(self, project_id: int, variable: Variable) -> None: ...

    def delete_variable(self, project_id: int, key: str) -> None: ...

    # repository
    def branch_exists(self, project_id: int, branch: str) -> bool: ...

    def tree(self, project_id: int, ref: str) -> list[TreeEntry]: ...

    def commit(
        self, project_id: int, branch: str, message: str, actions: Sequence[Mapping[str, Any]]
    ) -> str: ...

    def protect_branch(self, project_id: int, branch: str, access_level: int) -> str: ...

    # tokens and triggers
    def create_access_token(
        self, project_id: int, name: str, scopes: Sequence[str], access_level: int, expires_at: dt.date
    ) -> tuple[int, str]: ...

    def revoke_access_token(self, project_id: int, token_id: int) -> None: ...

    def triggers(self, project_id: int) -> list[TriggerInfo]: ...

    def create_trigger(self, project_id: int, description: str) -> tuple[TriggerInfo, str]: ...

    def delete_trigger(self, project_id: int, trigger_id: int) -> None: ...

    # pipelines
    def pipelines_named(self, project_id: int, name: str) -> list[Pipeline]: ...

    def run_trigger(
        self, project_id: int, ref: str, token: str, variables: Mapping[str, str]
    ) -> Pipeline: ...
