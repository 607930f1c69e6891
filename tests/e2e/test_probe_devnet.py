"""``dgpu probe`` end to end on ``dgpu devnet`` (real processes, chain, coordinator, libp2p
and Docker): the probe job runs in a busybox container on a provider whose GPUs are
simulated, the verdict is ``simulated`` (never ``verified``), signed and handed in; the
coordinator shows it in the provider's score document and on the explorer; ``dgpu run
--verified`` then finds no offer (no provider of this devnet can pass)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from dgpu.cli.devnet.parts import DEMO_IMAGE

from tests.e2e.test_devnet_lifecycle import alive, read_ready

DGPU = [sys.executable, "-m", "dgpu.cli.main"]


@pytest.mark.slow
@pytest.mark.docker
def test_probe_on_the_devnet_says_simulated_and_reaches_score_and_explorer(
    tmp_path: Path,
) -> None:
    state, home = tmp_path / "devnet", tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(home)
    process = subprocess.Popen(
        [*DGPU, "devnet", "--providers", "1", "--json", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "devnet.err").open("w"),
        text=True,
        env=env,
    )

    def dgpu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*DGPU, *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env=env,
            cwd=home,
        )

    try:
        ready = read_ready(process, 180)
        pids = [int(p) for p in ready["pids"]]  # type: ignore[attr-defined]
        provider = str(ready["providers"][0])  # type: ignore[index]
        url = str(ready["coordinator_url"])
        probe = dgpu("probe", "--image", DEMO_IMAGE, "--json", provider)
        assert probe.returncode == 0, probe.stderr[-3000:]
        outcome = json.loads(probe.stdout.strip().splitlines()[-1])
        assert outcome["verdict"] == "simulated"
        assert outcome["simulated"] is True and outcome["provider"] == provider
        assert outcome["job"]["state"] == "succeeded"  # the probe ran, and was paid for
        assert outcome["job"]["amount_paid"] > 0, outcome["job"]
        assert outcome["devices"] == []  # busybox in a container of simulated GPUs
        assert outcome["reported"] == "recorded"

        with httpx.Client(base_url=url, timeout=30) as http:
            profile = http.get(f"/api/v1/providers/{provider}").json()
            provider_page = http.get(f"/providers/{provider}").text
            offers_page = http.get("/offers").text
            listing_page = http.get("/providers").text
        assert profile["verification"] == "simulated"  # in the score document
        assert [v["verdict"] for v in profile["verdicts"]] == ["simulated"]
        assert profile["verdicts"][0]["job_id"] == outcome["job"]["job_id"]
        assert profile["offers"][0]["gpu_vendor"] == "nvidia"
        for page in (provider_page, offers_page, listing_page):
            assert 'data-verdict="simulated"' in page
        assert "probe: simulated" in provider_page

        verified = dgpu("run", "--gpu", "RTX 4090", "--image", DEMO_IMAGE, "--verified",
                        "--json", "--", "true")  # fmt: skip
        assert verified.returncode != 0
        assert "no" in verified.stderr.lower() and "offer" in verified.stderr.lower()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    assert all(not alive(p) for p in pids), "a devnet process outlived SIGINT"
