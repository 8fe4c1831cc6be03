"""The demo's progress lines and its one-line summary (`demo: OK ...` or `demo: FAILED at ...`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .exceptions import SandboxError


@dataclass
class Stage:
    name: str
    status: str = "not run"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Report:
    """Stage lines with elapsed time while running; the summary at the end."""

    out: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)
    stages: list[Stage] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    failure: tuple[str, str] | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.out(f"[{self.elapsed():6.1f}s]   {line}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Stage]:
        stage = Stage(name)
        self.stages.append(stage)
        self.out(f"[{self.elapsed():6.1f}s] == {name}")
        t0 = time.monotonic()
        try:
            yield stage
        except BaseException as exc:
            stage.status, stage.seconds = "FAILED", time.monotonic() - t0
            reason = failure_reason(exc)
            stage.detail = reason
            self.failure = (name, reason)
            self.out(f"[{self.elapsed():6.1f}s] !! {name} FAILED after {stage.seconds:.1f}s: {reason}")
            raise
        stage.status, stage.seconds = "ok", time.monotonic() - t0
        self.out(f"[{self.elapsed():6.1f}s] ok {name} ({stage.seconds:.1f}s)")

    def summary(self, total_planned: int) -> str:
        lines = ["", "Summary", "-------"]
        for stage in self.stages:
            lines.append(
                f"  {stage.status:7} {stage.seconds:6.1f}s  {stage.name}"
                + (f"  ({stage.detail})" if stage.detail and stage.status == "ok" else "")
            )
        for key, value in self.facts.items():
            if key == "test_mse":
                continue
            lines.append(f"  {key}: {value}")
        lines.append(f"  total wall time: {self.elapsed():.1f}s")
        passed = sum(1 for s in self.stages if s.status == "ok")
        if self.failure is None:
            mse = self.facts.get("test_mse")
            mse_text = f"{mse:.2f}" if isinstance(mse, float) else "n/a"
            lines.append(
                f"demo: OK stages={passed}/{total_planned} seconds={self.elapsed():.1f} test_mse={mse_text}"
            )
        else:
            lines.append(f"demo: FAILED at {self.failure[0]}: {self.failure[1]}")
        return "\n".join(lines)


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    if not isinstance(exc, SandboxError):
        text = f"{type(exc).__name__}: {text}"
    return text[:400]


# --- the lifecycle, step by step -----------------------------------------------------------------------
