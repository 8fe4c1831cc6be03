"""`python -m scripts.admin.bootstrap` (init.sh runs it): parse, check identity, run, print next steps."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.admin.bootstrap.aws import check_identity, make_clients
from scripts.admin.bootstrap.errors import BootstrapError, aws_errors, describe_aws_error
from scripts.admin.bootstrap.settings import parse_settings
from scripts.admin.bootstrap.workflow import STEPS, Console, next_steps, run


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = parse_settings(args, os.environ, sys.stdin.read)
        clients = make_clients(settings.region)
        check_identity(clients.sts)
        from scripts.admin import package as packaging

        def package(build_dir: Path) -> Any:
            try:
                return packaging.build_all(build_dir, log=packaging.Progress())
            except packaging.PackagingError as error:
                raise BootstrapError(f"packaging failed: {error}") from None

        result = run(settings, clients, Console(STEPS), package)
    except BootstrapError as error:
        print(f"init.sh: error: {error}", file=sys.stderr)
        return 1
    except aws_errors() as error:
        print(f"init.sh: error: AWS call failed: {describe_aws_error(error)}", file=sys.stderr)
        return 1
    print(next_steps(settings, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
