"""scripts/prerequisites.sh (behind `make venv`, `make test`, `make demo`): install as root, else stop with
one message, never let a missing tool surface later as test failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "prerequisites.sh"


def fake_path(tmp_path: Path, uid: int, have: tuple[str, ...]) -> tuple[str, Path]:
    """A PATH with the real bash and python3, the tools in `have`, a fake `id` and a recording apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))  # not a pyenv shim
    for tool in ("bash", *have):
        (bin_dir / tool).symlink_to(shutil.which(tool) or "/bin/true")
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    for stub in ("id", "apt-get"):
        (bin_dir / stub).chmod(0o755)
    return str(bin_dir), calls


def run(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], env={"PATH": path}, capture_output=True, text=True,
                          timeout=30, check=False)


def test_as_root_a_missing_rsync_is_installed_with_apt_get(tmp_path: Path) -> None:
    path, calls = fake_path(tmp_path, 0, ("git", "npm"))
    done = run(path)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == ["update -qq", "install -y -qq --no-install-recommends rsync"]


def test_otherwise_one_message_names_what_to_install_and_nothing_runs(tmp_path: Path) -> None:
    path, calls = fake_path(tmp_path, 1000, ("git", "npm"))
    done = run(path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "prerequisites: missing rsync: install them (as root: apt-get install rsync) and rerun"]
    assert not calls.exists()


@pytest.mark.skipif(not shutil.which("rsync"), reason="the machine itself lacks rsync")
def test_nothing_happens_when_everything_is_there(tmp_path: Path) -> None:
    path, calls = fake_path(tmp_path, 1000, ("git", "npm", "rsync"))
    done = run(path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not calls.exists()
