"""The sandbox in the background: `demo up` starts its servers detached, `demo down` stops them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts import REPO_ROOT

from .lab import DemoError
from .services import Services, State


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_state(root: Path) -> State:
    if not (root / "state.json").exists():
        raise DemoError(
            f"no sandbox at {root}: run `make demo ARGS=up` (or `python -m scripts.sandbox.demo up`)"
        )
    state = State.load(root)
    if not process_alive(state.pid):
        raise DemoError(
            f"the sandbox server (pid {state.pid}) is not running (a finished `--keep` run or a crash): "
            "run `demo down` to clean up, then `demo up`"
        )
    return state


def fresh_root(root: Path) -> None:
    if (root / "state.json").exists():
        old = State.load(root)
        if old.pid != os.getpid() and process_alive(old.pid):
            raise DemoError(f"a sandbox is already up at {root} (pid {old.pid}): run `demo down` first")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)


def serve(root: Path) -> int:
    """The detached server process of `demo up`: hosts the services until SIGTERM."""
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    services = Services(root)
    try:
        (root / "ready").write_text(str(os.getpid()))
        while not stop:
            time.sleep(0.2)
    finally:
        services.stop()
        with contextlib.suppress(FileNotFoundError):
            (root / "ready").unlink()
    return 0


def start_detached(root: Path, timeout: float = 60) -> State:
    (root / "logs").mkdir(parents=True, exist_ok=True)
    log = root / "logs" / "serve.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "scripts.sandbox.demo", "--root", str(root), "serve"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not (root / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            raise DemoError(f"the sandbox server did not start: see {log}")
        time.sleep(0.2)
    return State.load(root)


def stop_detached(state: State, timeout: float = 20) -> None:
    if state.pid == os.getpid() or not process_alive(state.pid):
        return
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if process_alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)


def print_access(state: State, out: Callable[[str], None]) -> None:
    out("Poke at the sandbox while it is up:")
    out("  git:                the clone lines `demo status` prints (CA bundle with the sandbox CA:")
    out(f"                      {state.git_ca_bundle})")
    out(
        f"  AWS (moto):         export AWS_ENDPOINT_URL={state.moto_url} AWS_DEFAULT_REGION={state.region} "
        "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    )
    out(f"  GitLab API:         {state.gitlab_url}/api/v4  (token in {state.token_file}, CA {state.ca_file})")
    out(
        f"    python -c \"import gitlab; gl = gitlab.Gitlab('{state.gitlab_url}', "
        f"private_token=open('{state.token_file}').read().strip(), ssl_verify='{state.ca_file}'); "
        'print([p.path_with_namespace for p in gl.projects.list()])"'
    )
    out(f"  sagemaker-runtime:  AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={state.inference_url}")
    root = Path(state.root)
    out(f"  logs:               {root / 'logs'}, Lambda logs {root / 'lambda' / 'logs'}")
