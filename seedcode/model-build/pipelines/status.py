"""The step status view both the remote and the local run print."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

StatusPrinter = Callable[[str, str, str], None]
TERMINAL = {"Succeeded", "Failed", "Stopped"}


def format_status(step: str, status: str, detail: str = "") -> str:
    """One line: time, step name, status and (for failures) the reason."""
    line = f"{time.strftime('%H:%M:%S')}  {step:<32} {status}"
    return f"{line}: {detail}" if detail else line


def printer(stream: TextIO | None = None) -> StatusPrinter:
    """A StatusPrinter writing one line per change to `stream` (stdout by default)."""

    def emit(step: str, status: str, detail: str = "") -> None:
        print(format_status(step, status, detail), file=stream or sys.stdout, flush=True)

    return emit
