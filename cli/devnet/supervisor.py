"""Child processes of the devnet: start, wait until ready, stop all of them.

Every part is started as ``dgpu <command> ... --json`` in its own process group; it is
ready when it prints its first JSON object line on stdout (its addresses). stderr goes
to ``<state>/logs/<name>.log``. On exit, each group gets SIGINT, then SIGTERM, then
SIGKILL, each after a bounded wait, so nothing is left running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgpu.protocol.errors import DgpuError

log = logging.getLogger(__name__)


class DevnetError(DgpuError):
    """A part of the devnet failed to start or died."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def dgpu_command() -> list[str]:
    """How to run this very dgpu (same interpreter, same install)."""
    return [sys.executable, "-m", "dgpu.cli.main"]


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.logs = state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        args: list[str],
        *,
        timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> Child:
        """Start ``dgpu <args>`` and wait for its first JSON line (its ready report)."""
        log_path = self.logs / f"{name}.log"
        out_path = self.logs / f"{name}.out"
        with log_path.open("w") as err, out_path.open("w") as out:
            process = subprocess.Popen(
                [*dgpu_command(), *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        child.ready = self._wait_ready(child, out_path, timeout)
        return child

    def _wait_ready(self, child: Child, out_path: Path, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in out_path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        ready = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # not complete yet
                    if isinstance(ready, dict):
                        return ready
            if not child.alive():
                raise DevnetError(
                    f"{child.name} exited with code {child.process.returncode} before it was "
                    f"ready; last log lines:\n{child.tail()}"
                )
            time.sleep(0.05)
        raise DevnetError(f"{child.name} was not ready within {timeout:.0f}s:\n{child.tail()}")

    def check(self) -> None:
        for child in self.children:
            if not child.alive():
                raise DevnetError(
                    f"{child.name} died (exit code {child.process.returncode}):\n{child.tail()}"
                )

    def stop_all(self, *, grace: float = 10.0) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            running = [c for c in reversed(self.children) if c.alive()]
            if not running:
                return
            for child in running:
                with suppress(ProcessLookupError):
                    os.killpg(child.process.pid, sig)
            deadline = time.monotonic() + grace
            for child in running:
                remaining = max(0.0, deadline - time.monotonic())
                try:
                    child.process.wait(timeout=remaining)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop on %s", child.name, sig.name)


@contextmanager
def supervised(state_dir: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(state_dir)
    try:
        yield supervisor
    finally:
        supervisor.stop_all()
