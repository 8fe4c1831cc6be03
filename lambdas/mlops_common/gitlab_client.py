"""The one place that talks to python-gitlab: bounded time and retries, and error translation.

Library errors become domain errors here, by HTTP status code (never by reading message text), so the
rest of the code only sees `mlops_common.errors` and the small frozen dataclasses of `gitlab_api`
(re-exported here).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gitlab
import requests
from gitlab.exceptions import GitlabError, GitlabHttpError

from mlops_common import logsafe
from mlops_common.errors import (
    GitLabAuthError,
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabOutOfTime,
    GitLabRejected,
    GitLabUnavailable,
)
from mlops_common.gitlab_api import (
    Namespace,
    Pipeline,
    ProjectInfo,
    TreeEntry,
    TriggerInfo,
    Variable,
)

logger = logging.getLogger(__name__)

__all__ = [
    "GitLab",
    "GitLabSettings",
    "Namespace",
    "Pipeline",
    "ProjectInfo",
    "TreeEntry",
    "TriggerInfo",
    "Variable",
]

_REJECTED = frozenset({400, 409, 422})
_MESSAGE_LIMIT = 120
MIN_REQUEST_TIME = 1.0  # seconds: a request is not started with less time than this left
RETRY_BACKOFF = 0.5  # seconds before the first retry, doubled each time, capped at max_retry_wait
NOT_SENT_CAUSES = frozenset({"Connection refused", "Name or service not known", "No route to host"})


@dataclass(frozen=True)
class GitLabSettings:
    """How to reach GitLab and how long to keep trying."""

    url: str
    token_source: str  # named in "token rejected" messages, e.g. the secret's name
    ssl_verify: bool | str = True
    timeout: float = 10.0  # seconds per HTTP request
    max_retries: int = 2  # retries after a connection error, 429 or 5xx
    max_retry_wait: float = 5.0  # cap on any wait, including a server's Retry-After
    deadline: float | None = None  # time.monotonic() after which no new request starts
    retry_posts: bool = True  # False: a POST that may have been applied is never sent again

    @property
    def attempts(self) -> int:
        return self.max_retries + 1


class _BoundedGitlab(gitlab.Gitlab):
    """python-gitlab client whose every request has a timeout, few retries and ends before a deadline.

    Retries are ours, not python-gitlab's (its own would get the whole remaining time): each attempt
    starts only while time is left and is cut to it. A 4xx is never retried (429 aside, which GitLab
    answers before doing anything); nor is a POST whose request may have been applied (a timeout or a
    5xx) unless `retry_posts` says its caller makes creates safe to repeat.
    """

    def __init__(self, settings: GitLabSettings, token: str | None) -> None:
        session = requests.Session()
        self._retry_after: float | None = None
        session.hooks["response"].append(self._remember_retry_after)
        super().__init__(
            url=settings.url,
            private_token=token or None,
            ssl_verify=settings.ssl_verify,
            timeout=settings.timeout,
            retry_transient_errors=False,
            session=session,
        )
        self._bounds = settings
        self.deadline = settings.deadline
        self.last_attempts = 0  # how many times the last request was sent (error messages say it)

    def _remember_retry_after(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        value = response.headers.get("Retry-After")
        self._retry_after = float(value) if value and value.strip().isdigit() else None

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _out_of_time(self) -> GitLabUnavailable:
        return GitLabOutOfTime(
            f"GitLab at {self._bounds.url} too slow: out of time before the Lambda timeout; "
            "retry, or raise the function timeout"
        )

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> requests.Response:
        repeatable = verb.lower() != "post" or self._bounds.retry_posts
        kwargs.update(obey_rate_limit=False, retry_transient_errors=False, max_retries=0)
        timeout = kwargs.get("timeout") or self._bounds.timeout
        attempt = 0
        while True:
            left = self.time_left()
            if left is not None and left <= MIN_REQUEST_TIME:
                raise self._out_of_time()
            kwargs["timeout"] = timeout if left is None else min(timeout, left)
            self._retry_after = None
            self.last_attempts = attempt + 1
            try:
                return super().http_request(verb, path, *args, **kwargs)
            except GitlabHttpError as exc:
                code = exc.response_code or 0
                retry = code == 429 or (code >= 500 and repeatable)
                if not retry or attempt >= self._bounds.max_retries:
                    raise
                wait = self._retry_after if code == 429 and self._retry_after is not None else 0.0
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                # Refused, unresolvable or a connect timeout: nothing reached GitLab. A read timeout or
                # a reset may come after GitLab applied the request.
                if (not repeatable and not _never_sent(exc)) or attempt >= self._bounds.max_retries:
                    raise
                wait = 0.0
            attempt += 1
            wait = min(max(wait, RETRY_BACKOFF * 2 ** (attempt - 1)), self._bounds.max_retry_wait)
            left = self.time_left()
            if left is not None and left - wait <= MIN_REQUEST_TIME:
                raise self._out_of_time() from None
            time.sleep(wait)


def _never_sent(exc: BaseException) -> bool:
    """Whether a connection error happened before the request left (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    cause = _network_cause(exc)
    return cause in NOT_SENT_CAUSES


def _short(message: object) -> str:
    """GitLab's error message (str, list or field dict) in one short line."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    if isinstance(message, dict):
        message = "; ".join(
            f"{k} {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in message.items()
        )
    elif isinstance(message, list):
        message = ", ".join(map(str, message))
    text = " ".join(str(message).split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def _network_cause(exc: BaseException) -> str:
    """The innermost OS-level reason of a requests error, e.g. 'Connection refused'."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS certificate not trusted (for a private CA set the GitLab CA bundle S3 URI)"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror)
        nested = [a for a in current.args if isinstance(a, BaseException)]
        nested += [
            x
            for x in (getattr(current, "reason", None), current.__cause__, current.__context__)
            if isinstance(x, BaseException)
        ]
        todo.extend(nested)
    return "connection failed"


class GitLab:
    """`GitLabApi` over python-gitlab, for both Lambdas. Every call may raise `errors.GitLabError`."""

    def __init__(
        self, settings: GitLabSettings, token: str | None, client: gitlab.Gitlab | None = None
    ) -> None:
        """`token` is the private token every call sends; None for a client that only runs triggers."""
        self.settings = settings
        self._gl = client or _BoundedGitlab(settings, token)

    @property
    def url(self) -> str:
        return self.settings.url

    @property
    def host(self) -> str:
        return urlsplit(self.settings.url).netloc

    def set_deadline(self, deadline: float | None) -> None:
        """Move the time after which no request starts (e.g. to keep a reserve for cleaning up)."""
        if isinstance(self._gl, _BoundedGitlab):
            self._gl.deadline = deadline

    @property
    def deadline(self) -> float | None:
        return self._gl.deadline if isinstance(self._gl, _BoundedGitlab) else self.settings.deadline

    # --- translation: the only place library errors are interpreted -----------------------------
    @contextmanager
    def _translated(self, action: str, subject: str, not_found_hint: str) -> Iterator[None]:
        try:
            yield
        except GitlabError as exc:
            raise self._translate(
                exc.response_code, exc.error_message, action, subject, not_found_hint
            ) from None
        except requests.exceptions.RequestException as exc:
            raise GitLabUnavailable(
                f"GitLab at {self.settings.url} unreachable after {self._attempts()} "
                f"while {action}: {_network_cause(exc)}"
            ) from None

    def _attempts(self) -> str:
        count = getattr(self._gl, "last_attempts", 0) or self.settings.attempts
        return f"{count} attempt" + ("s" if count != 1 else "")

    def _translate(
        self, code: int | None, message: object, action: str, subject: str, hint: str
    ) -> GitLabError:
        url, attempts = self.settings.url, self._attempts()
        if code == 401:
            return GitLabAuthError(
                f"GitLab token rejected (401) while {action}: check secret {self.settings.token_source}"
            )
        if code == 403:
            return GitLabForbidden(
                f"GitLab token not allowed (403) when {action}: give the token in secret "
                f"{self.settings.token_source} the api scope and Maintainer role on {subject}"
            )
        if code == 404:
            return GitLabNotFound(f"GitLab {subject} not found (404): {hint}")
        if code in _REJECTED:
            return GitLabRejected(f"GitLab refused {action} ({code}: {_short(message)})")
        if code == 429:
            return GitLabUnavailable(
                f"GitLab at {url} still rate-limiting (429) after {attempts} while {action}: try again later"
            )
        if code is not None and code >= 500:
            return GitLabUnavailable(
                f"GitLab at {url} failing (HTTP {code}) after {attempts} while {action}: try again later"
            )
        return GitLabError(f"GitLab answered {code} while {action}: {_short(message)}")

    # --- the token itself ------------------------------------------------------------------------
    def token_expiry(self) -> dt.date | None:
        """When the private token expires (GET /personal_access_tokens/self); None = never."""
        with self._translated("reading the token's expiry", "token", "check the token"):
            attrs = self._gl.http_get("/personal_access_tokens/self")
        value = attrs.get("expires_at") if isinstance(attrs, Mapping) else None
        return dt.date.fromisoformat(str(value)[:10]) if value else None

    # --- namespaces -------------------------------------------------------------------------------
    def token_owner_namespace(self) -> Namespace:
        with self._translated("reading the token's user", "user", "check the token"):
            self._gl.auth()
        user = self._gl.user
        if user is None:  # pragma: no cover - auth() always sets it or raises
            raise GitLabError("GitLab did not return the token's user")
        return Namespace(None, str(user.username))

    def group(self, ref: str) -> Namespace:
        """A group by full path or numeric id."""
        with self._translated(f"reading group '{ref}'", f"group '{ref}'", "check the GitLabGroup parameter"):
            group = self._gl.groups.get(int(ref) if ref.isdigit() else ref)
        return Namespace(int(group.id), str(group.full_path))

    # --- projects -----------------------------------------------------------------------------------
    def find_project(self, path_or_id: str | int) -> ProjectInfo | None:
        """The project, or None when it does not exist (404)."""
        try:
            with self._translated(f"reading project '{path_or_id}'", f"project '{path_or_id}'", ""):
                project = self._gl.projects.get(path_or_id)
        except GitLabNotFound:
            return None
        return ProjectInfo.from_api(project.attributes)

    def create_project(
        self, namespace: Namespace, name: str, description: str, topics: Sequence[str]
    ) -> ProjectInfo:
        data: dict[str, Any] = {
            "name": name,
            "path": name,
            "description": description,
            "topics": list(topics),
            "visibility": "private",
            "initialize_with_readme": False,
        }
        if namespace.id is not None:
            data["namespace_id"] = namespace.id
        path = f"{namespace.full_path}/{name}"
        with self._translated(
            f"creating project '{path}'",
            f"namespace '{namespace.full_path}'",
            "check the GitLabGroup parameter",
        ):
            project = self._gl.projects.create(data)
        return ProjectInfo.from_api(project.attributes)

    def update_project(self, project_id: int, changes: Mapping[str, Any]) -> None:
        with self._translated(
            f"updating project {project_id}", f"project {project_id}", "it was deleted meanwhile"
        ):
            self._gl.projects.update(project_id, dict(changes))

    def archive_project(self, project_id: int) -> None:
        with self._translated(f"archiving project {project_id}", f"project {project_id}", "already deleted"):
            self._gl.projects.get(project_id, lazy=True).archive()

    def unarchive_project(self, project_id: int) -> None:
        with self._translated(
            f"unarchiving project {project_id}", f"project {project_id}", "already deleted"
        ):
            self._gl.projects.get(project_id, lazy=True).unarchive()

    def delete_project(self, project_id: int) -> None:
        with self._translated(f"deleting project {project_id}", f"project {project_id}", "already deleted"):
            self._gl.projects.delete(project_id)

    # --- CI/CD variables ------------------------------------------------------------------------------
    def variables(self, project_id: int) -> dict[str, Variable]:
        with self._translated(
            f"listing CI/CD variables of project {project_id}", f"project {project_id}", ""
        ):
            items = self._gl.projects.get(project_id, lazy=True).variables.list(get_all=True)
        result: dict[str, Variable] = {}
        for item in items:
            attrs = item.attributes
            if attrs.get("environment_scope", "*") != "*":
                continue
            result[str(attrs["key"])] = Variable(
                key=str(attrs["key"]),
                value=str(attrs.get("value") or ""),
                masked=bool(attrs.get("masked", False)),
                protected=bool(attrs.get("protected", False)),
                raw=bool(attrs.get("raw", False)),
            )
        return result

    def create_variable(self, project_id: int, variable: Variable) -> None:
        with self._translated(
            f"creating CI/CD variable {variable.key} on project {project_id}", f"project {project_id}", ""
        ):
            self._gl.projects.get(project_id, lazy=True).variables.create(variable.payload())

    def update_variable(self, project_id: int, variable: Variable) -> None:
        with self._translated(
            f"updating CI/CD variable {variable.key} on project {project_id}",
            f"variable {variable.key} of project {project_id}",
            "",
        ):
            self._gl.projects.get(project_id, lazy=True).variables.update(variable.key, variable.payload())

    def delete_variable(self, project_id: int, key: str) -> None:
        with self._translated(
            f"deleting CI/CD variable {key} on project {project_id}",
            f"variable {key} of project {project_id}",
            "",
        ):
            self._gl.projects.get(project_id, lazy=True).variables.delete(key)

    # --- repository --------------------------------------------------------------------------------------
    def branch_exists(self, project_id: int, branch: str) -> bool:
        try:
            with self._translated(f"reading branch {branch} of project {project_id}", f"branch {branch}", ""):
                self._gl.projects.get(project_id, lazy=True).branches.get(branch)
        except GitLabNotFound:
            return False
        return True

    def tree(self, project_id: int, ref: str) -> list[TreeEntry]:
        """Every file (blob) on `ref`, with its git blob id and mode."""
        with self._translated(
            f"listing files of project {project_id}", f"branch {ref} of project {project_id}", ""
        ):
            items = self._gl.projects.get(project_id, lazy=True).repository_tree(
                ref=ref, recursive=True, get_all=True
            )
        return [
            TreeEntry(str(i["path"]), str(i["id"]), str(i.get("mode", "100644")))
            for i in items
            if isinstance(i, dict) and i.get("type") == "blob"
        ]

    def commit(self, project_id: int, branch: str, message: str, actions: Sequence[Mapping[str, Any]]) -> str:
        """Create one commit on `branch` (created if missing); returns the commit id."""
        with self._translated(f"committing to project {project_id}", f"project {project_id}", ""):
            commit = self._gl.projects.get(project_id, lazy=True).commits.create(
                {"branch": branch, "commit_message": message, "actions": [dict(a) for a in actions]}
            )
        return str(commit.id)

    # --- pipelines -----------------------------------------------------------------------------------------
    def create_pipeline(self, project_id: int, ref: str, variables: Mapping[str, str]) -> Pipeline:
        """POST /projects/:id/pipeline with the given variables (one call, no lookup)."""
        payload = {"ref": ref, "variables": [{"key": k, "value": v} for k, v in variables.items()]}
        with self._translated(
            f"starting a pipeline on {ref} of project {project_id}",
            f"project {project_id} or its branch {ref}",
            "check DEPLOY_PROJECT_ID and DEPLOY_REF",
        ):
            pipeline = self._gl.projects.get(project_id, lazy=True).pipelines.create(payload)
        return Pipeline(int(pipeline.id), str(pipeline.attributes.get("web_url") or ""))

    def pipelines_named(self, project_id: int, name: str) -> list[Pipeline]:
        """Pipelines of the project whose name (`workflow:name`) is `name`, newest first."""
        with self._translated(
            f"listing pipelines of project {project_id}", f"project {project_id}", "check DEPLOY_PROJECT_ID"
        ):
            items = self._gl.projects.get(project_id, lazy=True).pipelines.list(name=name, get_all=False)
        return [
            Pipeline(int(p.attributes["id"]), str(p.attributes.get("web_url") or ""))
            for p in items
            if p.attributes.get("name") == name
        ]

    def create_access_token(
        self, project_id: int, name: str, scopes: Sequence[str], access_level: int, expires_at: dt.date
    ) -> tuple[int, str]:
        """A new project access token: (its id, the token)."""
        with self._translated(
            f"creating an access token on project {project_id}", f"project {project_id}", ""
        ):
            token = self._gl.projects.get(project_id, lazy=True).access_tokens.create(
                {
                    "name": name,
                    "scopes": list(scopes),
                    "access_level": access_level,
                    "expires_at": expires_at.isoformat(),
                }
            )
        value = str(token.attributes["token"])
        logsafe.register_secret(value)
        return int(token.attributes["id"]), value

    def revoke_access_token(self, project_id: int, token_id: int) -> None:
        with self._translated(
            f"revoking access token {token_id} of project {project_id}", f"token {token_id}", ""
        ):
            self._gl.projects.get(project_id, lazy=True).access_tokens.delete(token_id)

    # --- protected branches --------------------------------------------------------------------------
    def protect_branch(self, project_id: int, branch: str, access_level: int) -> str:
        """Protect `branch` so only `access_level` (40 = Maintainer) may push and merge; idempotent.

        GitLab cannot change the levels of a protected branch in place (Free tier), so a weaker protection
        is removed and created again. Returns "protected", "already protected" or "tightened".
        """
        subject = f"branch {branch} of project {project_id}"
        current: dict[str, Any] | None
        try:
            with self._translated(f"reading the protection of {subject}", subject, ""):
                current = (
                    self._gl.projects.get(project_id, lazy=True).protectedbranches.get(branch).attributes
                )
        except GitLabNotFound:
            current = None
        if (
            current is not None
            and _min_level(current, "push_access_levels") >= access_level
            and _min_level(current, "merge_access_levels") >= access_level
        ):
            return "already protected"
        project = self._gl.projects.get(project_id, lazy=True)
        if current is not None:
            with self._translated(f"unprotecting {subject}", subject, ""):
                project.protectedbranches.delete(branch)
        try:
            with self._translated(f"protecting {subject}", subject, ""):
                project.protectedbranches.create(
                    {"name": branch, "push_access_level": access_level, "merge_access_level": access_level}
                )
        except GitLabRejected:
            # "already exists": a re-sent POST whose first answer was lost; fine if it has our levels.
            with self._translated(f"reading the protection of {subject}", subject, ""):
                made = project.protectedbranches.get(branch).attributes
            if (
                min(_min_level(made, "push_access_levels"), _min_level(made, "merge_access_levels"))
                < access_level
            ):
                raise
        return "tightened" if current is not None else "protected"

    # --- pipeline triggers ---------------------------------------------------------------------------
    def triggers(self, project_id: int) -> list[TriggerInfo]:
        with self._translated(
            f"listing pipeline triggers of project {project_id}", f"project {project_id}", ""
        ):
            items = self._gl.projects.get(project_id, lazy=True).triggers.list(get_all=True)
        return [
            TriggerInfo(int(t.attributes["id"]), str(t.attributes.get("description") or "")) for t in items
        ]

    def create_trigger(self, project_id: int, description: str) -> tuple[TriggerInfo, str]:
        """A new pipeline trigger token for the project: (its id and description, the token)."""
        with self._translated(
            f"creating a pipeline trigger on project {project_id}", f"project {project_id}", ""
        ):
            trigger = self._gl.projects.get(project_id, lazy=True).triggers.create(
                {"description": description}
            )
        token = str(trigger.attributes["token"])
        logsafe.register_secret(token)
        return TriggerInfo(int(trigger.attributes["id"]), description), token

    def delete_trigger(self, project_id: int, trigger_id: int) -> None:
        with self._translated(
            f"deleting pipeline trigger {trigger_id} of project {project_id}", f"trigger {trigger_id}", ""
        ):
            self._gl.projects.get(project_id, lazy=True).triggers.delete(trigger_id)

    def run_trigger(self, project_id: int, ref: str, token: str, variables: Mapping[str, str]) -> Pipeline:
        """POST /projects/:id/trigger/pipeline with a trigger token: one call, as the trigger's owner."""
        with self._translated(
            f"starting a pipeline on {ref} of project {project_id} with its trigger token",
            f"project {project_id} or its branch {ref}",
            "check DEPLOY_PROJECT_ID and DEPLOY_REF",
        ):
            pipeline = self._gl.projects.get(project_id, lazy=True).trigger_pipeline(
                ref, token, variables=dict(variables)
            )
        return Pipeline(int(pipeline.id), str(pipeline.attributes.get("web_url") or ""))


def _min_level(protection: Mapping[str, Any], key: str) -> int:
    levels = [int(level.get("access_level", 0)) for level in protection.get(key) or []]
    return min(levels) if levels else 0
