"""Domain errors: each carries one short message naming the thing that failed and how to fix it.

Handlers turn these into a FAILED answer (custom resource) or a raised error (trigger) without a stack
trace; anything else is a bug and keeps its trace.
"""

from __future__ import annotations


class MlopsError(Exception):
    """An expected failure whose message a human can act on."""


class ConfigError(MlopsError):
    """A missing or invalid setting (resource property, environment variable, secret content)."""


class GitLabError(MlopsError):
    """GitLab answered with an error we do not classify further."""


class GitLabAuthError(GitLabError):
    """The token was rejected (401)."""


class GitLabForbidden(GitLabError):
    """The token is valid but lacks a permission (403)."""


class GitLabNotFound(GitLabError):
    """The named group, project or branch does not exist or is invisible to the token (404)."""


class GitLabRejected(GitLabError):
    """GitLab refused the request's content (400, 409, 422), e.g. a name already taken."""


class GitLabUnavailable(GitLabError):
    """GitLab could not be reached, kept failing (5xx) or kept rate-limiting (429) within our retries."""


class GitLabOutOfTime(GitLabUnavailable):
    """No time was left before the Lambda's own deadline to start (or finish) another GitLab call."""


class ProjectNotOwned(GitLabError):
    """A GitLab project with the requested path exists but was not created by this SageMaker project."""


class MalformedEvent(MlopsError):
    """An incoming event lacks a field or has the wrong shape; retrying will not help."""


class NoRollbackTarget(MlopsError):
    """The package live in production was rejected and no earlier version is Approved."""
