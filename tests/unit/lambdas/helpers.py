"""Helpers shared by the Lambda unit and integration tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[2] / "fixtures" / "events"
GITLAB = "https://gitlab.example.com"
API = f"{GITLAB}/api/v4"
TOKEN = "glpat-UnitTestToken-0123456789"


def load_event(name: str) -> dict[str, Any]:
    """One JSON fixture per event scenario, from tests/fixtures/events/."""
    return json.loads((EVENTS / f"{name}.json").read_text())


class FakeContext:
    """The part of the Lambda context the handlers and crhelper use."""

    function_name = "checkin"
    aws_request_id = "req-1"

    def __init__(self, seconds: float = 60.0) -> None:
        self._seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self._seconds * 1000)


def project_json(
    pid: int, path: str, topics: list[str] | None = None, archived: bool = False
) -> dict[str, Any]:
    name = path.rsplit("/", 1)[-1]
    return {
        "id": pid,
        "name": name,
        "path": name,
        "path_with_namespace": path,
        "http_url_to_repo": f"{GITLAB}/{path}.git",
        "web_url": f"{GITLAB}/{path}",
        "description": "",
        "default_branch": None,
        "archived": archived,
        "topics": topics or [],
    }
