"""``dgpu devnet`` outlives its parts: kill -9 each part in turn (chain, coordinator,
bootstrap, provider); each comes back on the same port, the devnet stays up, and a job
then runs and is paid. Ctrl-C still stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_devnet_lifecycle import alive, read_ready

DGPU = [sys.executable, "-m", "dgpu.cli.main"]
PARTS = ("chain", "coordinator", "bootstrap", "provider-0")  # the supervisor's order


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_back(state: Path, err: Path, name: str, times: int, deadline_s: float) -> int:
    """Wait until the devnet said ``name`` is back for the ``times``-th time; its new pid."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if err.read_text(errors="replace").count(f"{name} is back") >= times:
            pids = json.loads((state / "devnet.json").read_text())["pids"]
            return int(pids[PARTS.index(name)])
        time.sleep(0.5)
    raise AssertionError(f"{name} did not come back:\n{err.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(900)
def test_every_part_killed_comes_back_on_its_port_and_a_job_runs(tmp_path: Path) -> None:
    state = tmp_path / "devnet"
    err = tmp_path / "devnet.err"
    process = subprocess.Popen(
        [*DGPU, "devnet", "--providers", "1", "--json", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=err.open("w"),
        text=True,
    )
    pids: list[int] = []
    try:
        ready = read_ready(process, 240)
        pids = [int(p) for p in ready["pids"]]  # type: ignore[attr-defined]
        ports = ready["ports"]
        assert isinstance(ports, dict)
        port_of = {
            "chain": ports["chain"],
            "coordinator": ports["coordinator"],
            "bootstrap": ports["bootstrap"],
            "provider-0": ports["providers"][0],
        }
        for name in PARTS:
            old = pids[PARTS.index(name)]
            os.kill(old, signal.SIGKILL)
            new = wait_back(state, err, name, 1, 180)
            assert new != old
            assert alive(new)
            assert listening(int(port_of[name])), f"{name} is not on its port again"
            assert process.poll() is None, "the devnet stopped when one part died"
            pids = [int(p) for p in json.loads((state / "devnet.json").read_text())["pids"]]

        command = [str(c) for c in ready["run_command"]]  # type: ignore[attr-defined]
        job = subprocess.run(
            [*DGPU, *command[1:-4], "--json", *command[-4:]],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert job.returncode == 0, job.stderr[-3000:]
        result = json.loads(job.stdout.strip().splitlines()[-1])
        assert result["state"] == "succeeded"
        assert result["amount_paid"] == result["seconds_billed"] * result["price_per_gpu_second"]
        assert result["amount_paid"] > 0
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    assert all(not alive(p) for p in pids), "a devnet process outlived SIGINT"
