"""Parsing gitlab-ci-local's output into GitLab's job model, and cleaning up after a dead host."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from scripts.gitlab_standin.runner import _dotenv, _job_spec, _starting_job, kill_leftover_runs


def test_manual_job_outside_rules_is_non_blocking_like_gitlab() -> None:
    plain = _job_spec({"name": "prod", "stage": "deploy", "when": "manual", "allow_failure": False})
    ruled = _job_spec({"name": "prod", "stage": "deploy", "when": "manual", "allow_failure": False,
                       "rules": [{"when": "manual"}]})
    assert plain.allow_failure is True
    assert ruled.allow_failure is False
    assert _job_spec({"name": "x"}).stage == "test"


def test_starting_line_is_matched_to_the_longest_job_name() -> None:
    names = sorted(["deploy", "deploy staging", "test"], key=len, reverse=True)
    assert _starting_job("deploy staging starting shell (deploy)", names) == "deploy staging"
    assert _starting_job("deploy starting shell (deploy)", names) == "deploy"
    assert _starting_job("deploy $ echo starting now", names) is None


def test_leftover_runs_of_a_dead_host_are_killed_by_their_recorded_ids_only(tmp_path: Path) -> None:
    # argv[0] "gitlab-ci-local": what a run's process looks like; the other one must survive.
    run = subprocess.Popen(["bash", "-c", "exec -a gitlab-ci-local sleep 30"], start_new_session=True)
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        cmdline = Path(f"/proc/{run.pid}/cmdline")
        for _ in range(200):  # until bash has exec'd: before that the process is still `bash -c ...`
            if cmdline.read_bytes().startswith(b"gitlab-ci-local"):
                break
            time.sleep(0.01)
        live = tmp_path / "live-runs.json"
        live.write_text(json.dumps([run.pid, other.pid, 999999]))
        assert kill_leftover_runs(live) == [run.pid]
        assert run.wait(timeout=10) != 0
        assert other.poll() is None
        assert kill_leftover_runs(tmp_path / "missing.json") == []
    finally:
        for proc in (run, other):
            proc.kill()
            proc.wait()


def test_environment_and_dotenv_come_from_the_expanded_config_and_the_job_report(tmp_path: Path) -> None:
    spec = _job_spec({"name": "deploy", "stage": "deploy"},
                     {"environment": {"name": "staging", "url": "$ENDPOINT_CONSOLE_URL"}})
    assert (spec.environment, spec.environment_url) == ("staging", "$ENDPOINT_CONSOLE_URL")
    assert _job_spec({"name": "x"}, {"environment": "review"}).environment == "review"
    report = tmp_path / ".gitlab-ci-local/artifacts/deploy/.gitlab-ci-reports/dotenv/d.env"
    report.parent.mkdir(parents=True)
    report.write_text("ENDPOINT_CONSOLE_URL=https://c/#/endpoints/e\nnot a line\nA=1\nA=2\n")
    assert _dotenv(tmp_path, "deploy") == {"ENDPOINT_CONSOLE_URL": "https://c/#/endpoints/e", "A": "2"}
