"""The merge request note: numbers, deltas, gate wording, registry baselines and one note per request."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipelines import review

CANDIDATE = review.Candidate(metrics={"mse": 4.1, "rmse": 2.0248, "mae": 1.45, "r2": 0.6}, test_rows=627,
                             mse_threshold=6.0, gate_passed=True, commit="c" * 40,
                             pipeline_url="https://gl/p/-/pipelines/7")
APPROVED = review.Baseline("latest approved", 3, "arn:pkg/3", {"mse": 4.3, "rmse": 2.0736, "mae": 1.5, "r2": 0.58},
                           "a" * 40)


def table(note: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in note.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_note_shows_candidate_baseline_and_signed_deltas_with_their_meaning():
    note = review.render_note(CANDIDATE, [APPROVED])
    assert note.startswith(review.MARKER)
    rows = table(note)
    assert rows["mse"] == ["4.1000", "4.3000", "-0.2000 (better)"]
    assert rows["r2"] == ["0.6000", "0.5800", "+0.0200 (better)"]
    assert "**Quality gate: passes** — test MSE 4.1000 ≤ threshold 6" in note
    assert "627 held-out test rows" in note and "arn:pkg/3" in note and "https://gl/p/-/pipelines/7" in note


def test_note_says_when_the_gate_fails_and_when_there_is_nothing_to_compare():
    failing = review.Candidate(metrics={"mse": 19.66}, test_rows=None, mse_threshold=6.0, gate_passed=False)
    note = review.render_note(failing, [], ["No Approved version in g yet: nothing to compare with."])
    assert "**Quality gate: fails** — test MSE 19.6600 is above the threshold 6" in note
    assert "- No Approved version in g yet" in note
    assert table(note)["mse"] == ["19.6600"]


class FakeRegistry:
    def __init__(self, versions: dict[int, dict[str, float]], prod: int | None, tags_fail: bool = False):
        self.versions, self.prod, self.tags_fail = versions, prod, tags_fail

    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["ModelApprovalStatus"] == "Approved" and kwargs["SortOrder"] == "Descending"
        newest_first = sorted(self.versions, reverse=True)
        return {"ModelPackageSummaryList": [{"ModelPackageArn": f"arn:pkg/{v}"} for v in newest_first]}

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        version = int(ModelPackageName.rsplit("/", 1)[-1])
        return {"ModelPackageVersion": version, "MetadataProperties": {"CommitId": f"{version}" * 40},
                "ModelMetrics": {"ModelQuality": {"Statistics": {"S3Uri": f"s3://b/{version}/evaluation.json"}}}}

    def list_tags(self, ResourceArn: str) -> dict[str, Any]:  # noqa: N803
        if self.tags_fail:
            raise RuntimeError("AccessDenied")
        version = int(ResourceArn.rsplit("/", 1)[-1])
        return {"Tags": [{"Key": "deployed-to:prod", "Value": "x"}] if version == self.prod else []}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        version = int(Key.split("/")[0])
        body = {"regression_metrics": {k: {"value": v} for k, v in self.versions[version].items()}}
        return {"Body": SimpleNamespace(read=lambda: json.dumps(body).encode())}


def test_baselines_are_the_latest_approved_and_the_tagged_production_version():
    registry = FakeRegistry({3: {"mse": 4.3}, 2: {"mse": 4.6}}, prod=2)
    baselines, notes = review.registry_baselines(registry, registry, "g")
    assert [(b.label, b.version, b.metrics["mse"]) for b in baselines] == [
        ("latest approved", 3, 4.3), ("production", 2, 4.6)]
    assert baselines[0].commit == "3" * 40 and notes == []


def test_one_column_when_the_latest_approved_version_is_in_production():
    registry = FakeRegistry({3: {"mse": 4.3}}, prod=3)
    baselines, _ = review.registry_baselines(registry, registry, "g")
    assert [b.label for b in baselines] == ["latest approved = production"]


def test_unreadable_tags_leave_a_note_instead_of_failing():
    registry = FakeRegistry({3: {"mse": 4.3}}, prod=None, tags_fail=True)
    baselines, notes = review.registry_baselines(registry, registry, "g")
    assert len(baselines) == 1 and "cannot read the registry's tags: AccessDenied" in notes[0]


class FakeNote(SimpleNamespace):
    def save(self) -> None:
        self.saved = True


class FakeNotes:
    def __init__(self, notes: list[FakeNote]) -> None:
        self.notes = notes
        self.created: list[dict[str, Any]] = []

    def list(self, **kwargs: Any) -> list[FakeNote]:
        return self.notes

    def create(self, data: dict[str, Any]) -> FakeNote:
        self.created.append(data)
        return FakeNote(id=99, **data)


def test_the_bot_updates_its_own_marked_note_and_leaves_others_alone():
    mine = FakeNote(id=5, author={"id": 7}, body=review.MARKER + "\nold")
    someone = FakeNote(id=6, author={"id": 8}, body=review.MARKER + "\nquoted by a human")
    notes = FakeNotes([someone, mine])
    assert review.upsert_note(notes, 7, review.MARKER + "\nnew") == ("updated", 5)
    assert mine.body.endswith("new") and someone.body.endswith("human") and notes.created == []
    assert review.upsert_note(FakeNotes([someone]), 7, "body") == ("created", 99)


def write_reports(folder: Path) -> None:
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"mse_threshold": 6.0, "quality_gate_passed": True,
                                                 "provenance": {"GitCommit": "c" * 40}}))
    (folder / "evaluation.json").write_text(json.dumps({"regression_metrics": {"mse": {"value": 4.1}}}))


def test_without_a_token_the_note_is_printed_with_how_to_set_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    write_reports(tmp_path / "r")
    registry = FakeRegistry({}, prod=None)
    env = {"MODEL_PACKAGE_GROUP_NAME": "g", "CI_MERGE_REQUEST_IID": "2"}
    assert review.post_from_ci(tmp_path / "r", env, registry, registry) == 0
    out = capsys.readouterr().out
    assert "| mse | 4.1000 |" in out and "MR_NOTE_TOKEN is not set" in out and "Reporter" in out
    assert (tmp_path / "r" / review.NOTE_FILE).read_text().startswith(review.MARKER)


def test_with_a_token_the_note_is_posted_on_the_merge_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_reports(tmp_path / "r")
    notes = FakeNotes([])
    monkeypatch.setattr(review, "_gitlab_notes", lambda env: (notes, 7))
    registry = FakeRegistry({1: {"mse": 5.0}}, prod=1)
    env = {"MODEL_PACKAGE_GROUP_NAME": "g", "CI_MERGE_REQUEST_IID": "2", "MR_NOTE_TOKEN": "test-only-token"}
    assert review.post_from_ci(tmp_path / "r", env, registry, registry) == 0
    (posted,) = notes.created
    assert table(posted["body"])["mse"] == ["4.1000", "5.0000", "-0.9000 (better)"]


class FakeGitLab(BaseHTTPRequestHandler):
    """Just the REST calls the note needs, answered as GitLab does (python-gitlab talks to it for real)."""

    notes: list[dict[str, Any]] = []
    token = "test-only-review-bot-token"  # noqa: S105 - a fake, never a real GitLab token

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return json.loads(raw) if raw else {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.headers.get("PRIVATE-TOKEN") != self.token:
            return self._send(401, {"message": "401 Unauthorized"})
        if self.path == "/api/v4/user":
            return self._send(200, {"id": 77, "username": "project_1_bot_x"})
        if self.path.startswith("/api/v4/projects/1/merge_requests/2/notes"):
            return self._send(200, self.notes)
        if self.path == "/api/v4/projects/1/merge_requests/2":
            return self._send(200, {"id": 9, "iid": 2, "project_id": 1})
        return self._send(404, {"message": "404 Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        note = {"id": len(self.notes) + 1, "body": self._body()["body"], "author": {"id": 77}}
        self.notes.append(note)
        self._send(201, note)

    def do_PUT(self) -> None:  # noqa: N802
        note_id = int(self.path.rsplit("/", 1)[-1])
        note = next(n for n in self.notes if n["id"] == note_id)
        note["body"] = self._body()["body"]
        self._send(200, note)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_gitlab() -> Iterator[str]:
    FakeGitLab.notes = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitLab)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_python_gitlab_posts_then_updates_the_one_note(tmp_path: Path, fake_gitlab: str):
    write_reports(tmp_path / "r")
    registry = FakeRegistry({1: {"mse": 5.0}}, prod=None)
    env = {"MODEL_PACKAGE_GROUP_NAME": "g", "CI_MERGE_REQUEST_IID": "2", "MR_NOTE_TOKEN": FakeGitLab.token,
           "CI_SERVER_URL": fake_gitlab, "CI_PROJECT_ID": "1"}
    assert review.post_from_ci(tmp_path / "r", env, registry, registry) == 0
    assert review.post_from_ci(tmp_path / "r", env, registry, registry) == 0  # the next push: same note
    [note] = FakeGitLab.notes
    assert note["body"].startswith(review.MARKER) and table(note["body"])["mse"][0] == "4.1000"


def test_a_token_gitlab_rejects_fails_with_what_to_do(tmp_path: Path, fake_gitlab: str,
                                                      capsys: pytest.CaptureFixture[str]):
    write_reports(tmp_path / "r")
    registry = FakeRegistry({}, prod=None)
    env = {"MODEL_PACKAGE_GROUP_NAME": "g", "CI_MERGE_REQUEST_IID": "2", "MR_NOTE_TOKEN": "test-only-expired-token",
           "CI_SERVER_URL": fake_gitlab, "CI_PROJECT_ID": "1"}
    assert review.post_from_ci(tmp_path / "r", env, registry, registry) == 1
    assert "MR_NOTE_TOKEN was rejected (401)" in capsys.readouterr().err
