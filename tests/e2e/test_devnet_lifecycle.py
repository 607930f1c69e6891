"""``dgpu devnet`` without --demo: up, a job from another process — the short ``dgpu run``
that needs nothing but the ``devnet`` profile the devnet wrote in a fresh HOME — then
SIGINT leaves no process and no container behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from dgpu.cli.devnet.parts import DEMO_IMAGE

DGPU = [sys.executable, "-m", "dgpu.cli.main"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def read_ready(process: subprocess.Popen[str], deadline_s: float) -> dict[str, object]:
    assert process.stdout is not None
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        line = process.stdout.readline()
        if line.startswith("{"):
            ready = json.loads(line)
            assert isinstance(ready, dict)
            return ready
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"devnet did not come up (exit {process.poll()})")


@pytest.mark.slow
@pytest.mark.docker
def test_devnet_runs_a_job_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    state, home = tmp_path / "devnet", tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(home)
    process = subprocess.Popen(
        [*DGPU, "devnet", "--providers", "2", "--json", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "devnet.err").open("w"),
        text=True,
        env=env,
    )
    try:
        ready = read_ready(process, 180)
        pids = [int(p) for p in ready["pids"]]  # type: ignore[attr-defined]
        assert pids
        assert all(alive(p) for p in pids)
        command = [str(c) for c in ready["run_command"]]  # type: ignore[attr-defined]
        # the profile in ~/.config/dgpu/config.toml holds the network, key and defaults
        assert command[:6] == ["dgpu", "run", "--gpu", "RTX 4090", "--image", DEMO_IMAGE]
        assert command[6] == "--"
        profile = (home / ".config" / "dgpu" / "config.toml").read_text()
        assert 'profile = "devnet"' in profile and str(ready["rpc_url"]) in profile
        job = subprocess.run(
            [*DGPU, *command[1:6], "--json", *command[6:]],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=env,
            cwd=home,
        )
        assert job.returncode == 0, job.stderr[-3000:]
        result = json.loads(job.stdout.strip().splitlines()[-1])
        assert result["state"] == "succeeded"
        assert result["amount_paid"] == result["seconds_billed"] * result["price_per_gpu_second"]
        assert (state / "renter" / "outputs" / "result.txt").read_text() == "done\n"
        providers = [str(p) for p in ready["providers"]]  # type: ignore[attr-defined]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    assert all(not alive(p) for p in pids), "a devnet process outlived SIGINT"
    client = docker.from_env()
    try:
        for owner in providers:
            left = client.containers.list(all=True, filters={"label": f"dgpu.owner={owner}"})
            assert left == [], f"containers left behind: {left}"
    finally:
        client.close()
