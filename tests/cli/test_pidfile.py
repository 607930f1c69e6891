"""``dgpu run cancel`` signals only the process that wrote the PID file: not another
live process that now has its PID; a killed renter's job is closed, not left running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dgpu.cli import pidfile
from dgpu.node.store import JobRecord, NodeStore

DGPU = [sys.executable, "-m", "dgpu.cli.main"]
JOB = "ab" * 16


def cancel(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DGPU, "run", "cancel", "--data-dir", str(data_dir), JOB],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """Another live process, whose PID a stale file might name."""
    process = subprocess.Popen(["sleep", "120"])
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("kind", ["other_start_time", "bare_number"])
def test_stale_pid_file_does_not_signal_another_process(
    tmp_path: Path, bystander: subprocess.Popen[bytes], kind: str
) -> None:
    running = tmp_path / "running"
    running.mkdir()
    path = running / f"{JOB}.pid"
    if kind == "bare_number":  # the format of older dgpu versions
        path.write_text(str(bystander.pid))
    else:  # written by an earlier process that had this PID
        record = pidfile.read_current(bystander.pid)
        path.write_text(json.dumps({**record, "start_ticks": record["start_ticks"] - 1}))
    done = cancel(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "not running any more" in done.stderr
    time.sleep(0.2)  # a signal, had one been sent, is delivered by now
    assert bystander.poll() is None, "a stale PID file signalled another process"
    assert not path.exists()


def test_live_owner_is_signalled(tmp_path: Path) -> None:
    running = tmp_path / "running"
    running.mkdir()
    path = running / f"{JOB}.pid"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import signal, sys, time
                from pathlib import Path
                from dgpu.cli import pidfile
                pidfile.write(Path({str(path)!r}))
                print("ready", flush=True)
                try:
                    time.sleep(120)
                except KeyboardInterrupt:
                    sys.exit(3)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
    done = cancel(tmp_path)
    assert "cancel requested" in done.stderr, done.stderr
    assert owner.wait(timeout=30) == 3  # SIGINT reached it


def test_killed_renter_job_is_closed(tmp_path: Path) -> None:
    running = tmp_path / "running"
    running.mkdir()
    with NodeStore.open(tmp_path / "node.sqlite") as store:
        store.insert_job(
            JobRecord(
                job_id=bytes.fromhex(JOB),
                role="renter",
                state="running",
                counterparty=bytes(32),
                created_at=1,
                updated_at=1,
            )
        )
    renter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from dgpu.cli import pidfile; "
            f"pidfile.write(Path({str(running / (JOB + '.pid'))!r})); print('ready', flush=True);"
            " time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert renter.stdout is not None and renter.stdout.readline().strip() == "ready"
    renter.send_signal(signal.SIGKILL)
    renter.wait()
    done = cancel(tmp_path)
    assert "not running any more" in done.stderr, done.stderr
    with NodeStore.open(tmp_path / "node.sqlite") as store:
        job = store.get_job(bytes.fromhex(JOB), "renter")
    assert job is not None and job.state == "abandoned"
    assert not (running / f"{JOB}.pid").exists()
