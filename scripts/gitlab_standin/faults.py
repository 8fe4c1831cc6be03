"""Fault injection: tests make the next N matching requests fail (or stall) the way GitLab can."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

_REASONS = {
    401: {"message": "401 Unauthorized"}, 403: {"message": "403 Forbidden"},
    404: {"message": "404 Not Found"}, 409: {"message": "409 Conflict"},
    429: {"message": "429 Too Many Requests"}, 500: {"message": "500 Internal Server Error"},
    502: {"message": "502 Bad Gateway"}, 503: {"message": "503 Service Unavailable"},
}


@dataclass
class Fault:
    """Answer matching requests with `status` (None: only wait `delay` seconds, then serve normally).

    `path_regex` is searched in the raw request path (e.g. `/api/v4/projects$`); `method` None matches
    any; `count` None means for ever; `retry_after` adds the Retry-After header (seconds);
    `after` True serves the request first and then answers the fault instead (the change happened,
    the client never saw it: a retried create then meets "has already been taken"); `skip` lets that many
    matching requests through untouched before the fault applies ("stall after N answers": `skip=N`,
    `delay=` longer than the client's timeout, `count=None`).
    """

    path_regex: str
    status: int | None = None
    method: str | None = None
    count: int | None = 1
    retry_after: int | None = None
    body: Any = None
    delay: float = 0.0
    after: bool = False
    skip: int = 0
    id: int = 0
    hits: int = 0
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path_regex)
        if self.method:
            self.method = self.method.upper()
        if self.body is None and self.status is not None:
            self.body = _REASONS.get(self.status, {"message": f"{self.status} Error"})

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and bool(self._regex.search(path))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path_regex": self.path_regex, "status": self.status,
                "method": self.method, "count": self.count, "retry_after": self.retry_after,
                "delay": self.delay, "after": self.after, "skip": self.skip, "hits": self.hits}


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next = 1

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = self._next
            self._next += 1
            self._faults.append(fault)
            return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str) -> Fault | None:
        """The first live fault matching the request, consuming one of its uses."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path) and (fault.count is None or fault.count > 0):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.hits += 1
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
            return None
