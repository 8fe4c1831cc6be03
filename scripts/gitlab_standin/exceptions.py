"""Errors the stand-in answers with: each fixes GitLab's HTTP status and JSON body for one case."""

from __future__ import annotations

from typing import Any


class StandinError(Exception):
    """Base: `status` and `body` are exactly what GitLab sends for this case."""

    status = 500
    body: Any = {"message": "500 Internal Server Error"}

    def __init__(self, body: Any = None, status: int | None = None) -> None:
        if body is not None:
            self.body = body
        if status is not None:
            self.status = status
        super().__init__(str(self.body))


class Unauthorized(StandinError):
    status = 401
    body = {"message": "401 Unauthorized"}


class Forbidden(StandinError):
    status = 403
    body = {"message": "403 Forbidden"}


class NotFound(StandinError):
    """`404 <Thing> Not Found`, GitLab's wording for a missing resource."""

    status = 404

    def __init__(self, thing: str = "") -> None:
        super().__init__({"message": f"404 {thing} Not Found".replace("  ", " ")})


class InsufficientScope(StandinError):
    """403 for a token whose scopes do not cover the request (GitLab's OAuth-style body)."""

    status = 403

    def __init__(self, needed: str) -> None:
        super().__init__(
            {
                "error": "insufficient_scope",
                "error_description": (
                    "The request requires higher privileges than provided by the access token."
                ),
                "scope": needed,
            }
        )


class Conflict(StandinError):
    """409 with a plain message: a merge whose sha is not the source branch's head, a branch that is
    protected already."""

    status = 409

    def __init__(self, message: str) -> None:
        super().__init__({"message": message})


class NotAcceptable(StandinError):
    """406, e.g. "Branch cannot be merged" for a merge request with conflicts."""

    status = 406

    def __init__(self, message: str) -> None:
        super().__init__({"message": message})


class RouteNotFound(StandinError):
    status = 404
    body = {"error": "404 Not Found"}


class MethodNotAllowed(StandinError):
    status = 405
    body = {"error": "405 Method Not Allowed"}

    def __init__(self, message: str | None = None) -> None:
        super().__init__({"message": message} if message else None)


class BadRequest(StandinError):
    """400 with a plain message: {"message": "..."}."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__({"message": message})


class MissingParameter(StandinError):
    """400 {"error": "<name> is missing"}, as Grape reports a required parameter."""

    status = 400

    def __init__(self, *names: str) -> None:
        joined = ", ".join(names)
        verb = "are" if len(names) > 1 else "is"
        super().__init__({"error": f"{joined} {verb} missing"})


class InvalidParameter(StandinError):
    status = 400

    def __init__(self, name: str, reason: str = "is invalid") -> None:
        super().__init__({"error": f"{name} {reason}"})


class ValidationFailed(StandinError):
    """400 {"message": {"field": ["reason", ...]}}: an ActiveRecord validation error."""

    status = 400

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__({"message": errors})


class PipelineRefused(StandinError):
    """400 {"message": {"base": [...]}}: GitLab refused to create a pipeline."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__({"message": {"base": [reason]}})
