"""`python -m scripts.gitlab_standin --port N --data-dir D`: serve until interrupted."""

from __future__ import annotations

import argparse
import os
import signal
import threading

from .runner import GitlabCiLocalRunner
from .server import start_standin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gitlab_standin", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--data-dir", help="where repositories and pipeline work dirs live (default: temp)")
    parser.add_argument("--group", action="append", default=[], help="pre-create a group (repeatable)")
    parser.add_argument("--run-pipelines", action="store_true",
                        help="run pipelines with gitlab-ci-local (shell executor) instead of only recording")
    parser.add_argument("--verbose", action="store_true", help="log method, path and status of each request")
    args = parser.parse_args(argv)
    # The token comes from the environment (never argv, which other users can read), else a random one.
    token = os.environ.get("GITLAB_STANDIN_TOKEN")
    runner = GitlabCiLocalRunner() if args.run_pipelines else None
    standin = start_standin(port=args.port, data_dir=args.data_dir, tokens=[token] if token else None,
                            groups=args.group, runner=runner, verbose=args.verbose)
    print(f"GITLAB_URL={standin.url}", flush=True)
    print(f"GITLAB_TOKEN={standin.token}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
