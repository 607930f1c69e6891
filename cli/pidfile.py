"""PID files that cannot signal the wrong process.

A PID file outlives a killed process, and the kernel reuses PIDs: signalling the number
in a stale file could hit any process of the machine. So the file records the process's
start time (``/proc/PID/stat`` field 22, clock ticks since boot) and the boot id, and a
signal goes out only through a pidfd opened *before* the check: once the pidfd is open
the number cannot be reused under it, and if the start time and boot still match it is
our process.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgpu.protocol.errors import DgpuError

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class PidFileError(DgpuError):
    """The PID file cannot be read or written."""


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_ticks: int
    boot_id: str


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19])  # field 22 of the whole line


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def read_current(pid: int) -> dict[str, Any]:
    """What a PID file holds for the live process ``pid``."""
    return {"pid": pid, "start_ticks": _start_ticks(pid), "boot_id": _boot_id()}


def write(path: Path) -> None:
    """Record this process in ``path``."""
    record = read_current(os.getpid())
    try:
        path.write_text(json.dumps(record) + "\n")
    except OSError as exc:
        raise PidFileError(f"cannot write {path}: {exc}") from exc


def read(path: Path) -> PidRecord | None:
    """The process a PID file names; None when it is not one we can verify (an older
    file with a bare number, or garbage)."""
    try:
        data = json.loads(path.read_text())
        return PidRecord(int(data["pid"]), int(data["start_ticks"]), str(data["boot_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_ours(record: PidRecord) -> bool:
    """The process that wrote the record still runs (not another one with its PID)."""
    return record.boot_id == _boot_id() and _start_ticks(record.pid) == record.start_ticks


def send(path: Path, sig: signal.Signals) -> bool:
    """Signal the process of ``path`` if it is still the one that wrote it; False when
    the file is stale (the process ended, or its PID now belongs to another process)."""
    record = read(path)
    if record is None:
        return False
    try:
        fd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return False
    except OSError as exc:
        raise PidFileError(f"cannot open process {record.pid}: {exc}") from exc
    try:
        if not is_ours(record):
            return False
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return False  # ended between the check and the signal
    finally:
        os.close(fd)
    return True
