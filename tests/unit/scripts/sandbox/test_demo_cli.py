"""The demo's command line: options anywhere, `down` that always cleans, `run-job` choosing its pipeline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts.sandbox import background, demo
from scripts.sandbox.lab import DemoError


@pytest.mark.parametrize(
    "argv",
    [["down", "--keep", "--root", "/tmp/x"], ["--keep", "--root", "/tmp/x", "down"],
     ["--root", "/tmp/x", "down", "--keep"]],
)
def test_options_go_before_or_after_the_sub_command(argv: list[str]) -> None:
    args = demo.build_parser().parse_args(argv)
    assert (args.command, args.keep, args.root) == ("down", True, Path("/tmp/x"))


def test_defaults_stay_when_no_option_is_given() -> None:
    args = demo.build_parser().parse_args(["run-job", "deploy-prod", "--pipeline", "7"])
    assert (args.root, args.keep, args.auth_mode) == (demo.DEFAULT_ROOT, False, "oidc")
    assert args.deletion_policy == "delete"
    assert (args.job, args.pipeline) == ("deploy-prod", 7)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])  # noqa: S607
    proc.wait()
    return proc.pid


def sandbox_left_behind(root: Path) -> None:
    """What a finished `--keep` run (or a crashed server) leaves: state naming a process that is gone."""
    (root / "logs" / "ci").mkdir(parents=True)
    (root / "state.json").write_text(json.dumps({
        "root": str(root), "moto_url": "http://127.0.0.1:1", "gitlab_url": "https://127.0.0.1:2",
        "gitlab_http_url": "http://127.0.0.1:3", "inference_url": "http://127.0.0.1:4", "ca_file": "",
        "token_file": "", "pid": dead_pid(),
    }))


def test_down_cleans_up_after_a_keep_run_or_a_crash(tmp_path: Path) -> None:
    root = tmp_path / ".sandbox"
    sandbox_left_behind(root)
    lines: list[str] = []
    assert demo.command(demo.build_parser().parse_args(["down", "--root", str(root)]), lines.append) == 0
    assert not root.exists()
    assert lines == ["the sandbox server was not running: nothing to delete in it",
                     f"sandbox stopped and {root} removed"]


def test_down_keep_stops_but_keeps_the_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / ".sandbox"
    sandbox_left_behind(root)
    assert demo.main(["down", "--keep", "--root", str(root)]) == 0
    assert root.exists() and "not running" in capsys.readouterr().out
    assert demo.main(["down", "--root", str(root)]) == 0
    assert not root.exists()


def test_a_server_that_is_gone_is_reported_with_the_way_out(tmp_path: Path) -> None:
    root = tmp_path / ".sandbox"
    sandbox_left_behind(root)
    with pytest.raises(DemoError, match="run `demo down` to clean up, then `demo up`"):
        background.load_state(root)


class FakeLab:
    def __init__(self, jobs: dict[int, dict[str, str]]) -> None:
        self.jobs = jobs

    def pipelines(self, project_id: int) -> list[dict[str, Any]]:
        return [{"id": i, "status": "manual" if "manual" in j.values() else "success"}
                for i, j in self.jobs.items()]

    def pipeline_jobs(self, project_id: int, pipeline_id: int) -> dict[str, str]:
        return self.jobs[pipeline_id]


def test_run_job_takes_the_newest_pipeline_where_the_job_waits() -> None:
    lab = FakeLab({3: {"deploy-prod": "manual"}, 5: {"deploy-prod": "success"}, 6: {"build": "failed"}})
    assert demo._manual_pipeline(lab, 1, "deploy-prod", 0) == 3  # type: ignore[arg-type]
    assert demo._manual_pipeline(lab, 1, "deploy-prod", 5) == 5  # type: ignore[arg-type]
    with pytest.raises(DemoError, match="no pipeline #9"):
        demo._manual_pipeline(lab, 1, "deploy-prod", 9)  # type: ignore[arg-type]
    done = FakeLab({5: {"deploy-prod": "success"}})
    expected = r"no deploy pipeline has deploy-prod waiting.*#5 \(success, deploy-prod: success\)"
    with pytest.raises(DemoError, match=expected):
        demo._manual_pipeline(done, 1, "deploy-prod", 0)  # type: ignore[arg-type]
