"""Child processes of the devnet: start, wait until ready, restart the dead, stop all.

Every part is started as ``dgpu <command> ... --json`` in its own process group; it is
ready when it prints its first JSON object line on stdout (its addresses). stderr goes
to ``<state>/logs/<name>.log`` (appended to across restarts, with a marker line).

A part that dies is started again with the very same command line — same ports, same
key, same state directory — so the other parts find it where they left it (crash-only:
a part's restart *is* its recovery). Restarts back off (1 s, 2 s, 4 s … 30 s) while a
part keeps dying; the count starts again once it stayed up for ``STABLE_S``. Only the
devnet's own exit stops the parts: each group gets SIGINT, then SIGTERM, then SIGKILL,
each after a bounded wait, so nothing is left running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from dgpu.cli.profile import without_profiles
from dgpu.protocol.errors import DgpuError

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0  # up this long: the next death starts the backoff from the beginning


class DevnetError(DgpuError):
    """A part of the devnet failed to start or died."""


class PartState(Enum):
    UP = "up"
    WAITING = "waiting"  # dead; started again at ``Child.next_start_at``
    STARTING = "starting"  # started again, not ready yet


@dataclass(frozen=True)
class PartSpec:
    """How to start one part; kept so that a restart runs the same command line."""

    name: str
    args: tuple[str, ...]
    timeout: float = 60.0
    env: tuple[tuple[str, str], ...] = ()
    # Called (in the supervisor's thread) after a *restart* is ready, with the ready
    # report; e.g. the chain's wallets are funded again. Errors are shown, not raised.
    on_restart: Callable[[dict[str, Any]], None] | None = None
    # Runs the part elsewhere, e.g. ``ip netns exec <ns>`` (a host of a network lab);
    # such a prefix execs into the part, so the pid and process group stay the part's.
    prefix: tuple[str, ...] = ()


@dataclass
class Child:
    spec: PartSpec
    process: subprocess.Popen[str]
    log_path: Path
    out_path: Path
    ready: dict[str, Any] = field(default_factory=dict)
    state: PartState = PartState.UP
    restarts: int = 0
    failures_in_a_row: int = 0
    last_exit: int | None = None
    started_at: float = 0.0
    next_start_at: float = 0.0
    note: str = ""  # what the status panel shows about the part's past

    @property
    def name(self) -> str:
        return self.spec.name

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


def read_ready(out_path: Path) -> dict[str, Any] | None:
    """The first complete JSON object line a part printed, if any yet."""
    try:
        text = out_path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                ready = json.loads(line)
            except json.JSONDecodeError:
                continue  # not complete yet
            if isinstance(ready, dict):
                return ready
    return None


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.logs = state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []

    def _spawn(self, spec: PartSpec, *, append: bool) -> tuple[subprocess.Popen[str], Path, Path]:
        log_path = self.logs / f"{spec.name}.log"
        out_path = self.logs / f"{spec.name}.out"
        with log_path.open("a" if append else "w") as err, out_path.open("w") as out:
            if append:
                err.write(f"\n--- dgpu devnet: restarting {spec.name} at {time.ctime()} ---\n")
                err.flush()
            process = subprocess.Popen(
                [*spec.prefix, *dgpu_command(), *spec.args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
                # the parts take every value from their flags, none from the user's profile
                env={**without_profiles(os.environ), **dict(spec.env), "PYTHONUNBUFFERED": "1"},
            )
        return process, log_path, out_path

    def start(
        self,
        name: str,
        args: list[str],
        *,
        timeout: float = 60.0,
        env: dict[str, str] | None = None,
        on_restart: Callable[[dict[str, Any]], None] | None = None,
        prefix: tuple[str, ...] = (),
    ) -> Child:
        """Start ``dgpu <args>`` (after ``prefix``, e.g. ``ip netns exec <ns>``) and wait
        for its first JSON line (its ready report)."""
        spec = PartSpec(name, tuple(args), timeout, tuple((env or {}).items()), on_restart, prefix)
        process, log_path, out_path = self._spawn(spec, append=False)
        child = Child(spec, process, log_path, out_path, started_at=time.monotonic())
        self.children.append(child)
        child.ready = self._wait_ready(child, timeout)
        return child

    def _wait_ready(self, child: Child, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = read_ready(child.out_path)
            if ready is not None:
                return ready
            if not child.alive():
                raise DevnetError(
                    f"{child.name} exited with code {child.process.returncode} before it was "
                    f"ready; last log lines:\n{child.tail()}"
                )
            time.sleep(0.05)
        raise DevnetError(f"{child.name} was not ready within {timeout:.0f}s:\n{child.tail()}")

    def check(self) -> None:
        """Raise if a part is dead (for runs that must not restart, e.g. ``--demo``)."""
        for child in self.children:
            if not child.alive():
                raise DevnetError(
                    f"{child.name} died (exit code {child.process.returncode}):\n{child.tail()}"
                )

    def revive(self, now: float | None = None) -> list[str]:
        """One pass of the restart loop (never blocks long); returns lines worth showing.

        Called every second or two by the devnet's watch loop: notices deaths, starts
        parts whose backoff ran out, and promotes restarted parts that printed their
        ready line.
        """
        now = time.monotonic() if now is None else now
        events: list[str] = []
        for child in self.children:
            if child.state is PartState.UP and not child.alive():
                events.append(self._died(child, now, "died"))
            elif child.state is PartState.WAITING and now >= child.next_start_at:
                child.process, child.log_path, child.out_path = self._spawn(child.spec, append=True)
                child.state, child.started_at = PartState.STARTING, now
                child.restarts += 1
                events.append(f"{child.name}: restarting (attempt {child.restarts})")
            elif child.state is PartState.STARTING:
                events.extend(self._promote(child, now))
        return events

    def _died(self, child: Child, now: float, how: str) -> str:
        if child.state is PartState.UP and now - child.started_at >= STABLE_S:
            child.failures_in_a_row = 0
        child.failures_in_a_row += 1
        child.last_exit = child.process.returncode
        backoff = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (child.failures_in_a_row - 1))
        child.state, child.next_start_at = PartState.WAITING, now + backoff
        child.note = f"{how} (exit code {child.last_exit}) at {time.strftime('%H:%M:%S')}"
        log.warning("%s %s; restarting in %.0fs", child.name, child.note, backoff)
        return f"{child.name} {child.note}; restarting in {backoff:.0f}s"

    def _promote(self, child: Child, now: float) -> list[str]:
        ready = read_ready(child.out_path)
        if ready is None:
            if not child.alive():
                return [self._died(child, now, "died while restarting")]
            if now - child.started_at > child.spec.timeout:
                with suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
                return [self._died(child, now, "was not ready in time")]
            return []
        child.ready, child.state, child.started_at = ready, PartState.UP, now
        child.note = f"restarted {child.restarts}x, last exit code {child.last_exit}"
        events = [f"{child.name} is back ({child.note})"]
        if child.spec.on_restart is not None:
            try:
                child.spec.on_restart(ready)
            except DgpuError as exc:
                events.append(f"{child.name}: after the restart: {exc}")
        return events

    def pids(self) -> list[int]:
        return [child.process.pid for child in self.children]

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
