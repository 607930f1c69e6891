"""A hostile peer floods the bootstrap's circuit relay while an honest job runs through
it (topology 4: the provider behind a symmetric NAT, so the job stays on the relay —
no hole punch takes it off).

The attacker, on a host of its own, asks for reservations under many fresh peer IDs from
its one IP and for many circuits to the honest provider at once (``relay_flood.py``, a
real py-libp2p process speaking HOP). The relay's limits (reservations per IP — ours —,
circuits per reserved peer — the library's) refuse the excess, and the honest renter's
circuit stays: its job completes over the relay without a reconnect, paid on chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import trio
from dgpu.cli.devnet.netlab import Lab, build_topology

from tests.hosts.midjob import settled, start_provider
from tests.hosts.swarm import open_swarm
from tests.node.clikit import PRICE, ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PER_IP = 2
CIRCUITS = 4
FLOOD_RESERVATIONS = 10
FLOOD_CIRCUITS = 12


async def test_a_relay_flood_is_refused_while_an_honest_relayed_job_keeps_its_circuit(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "symmetric")
    evil = lab.public("evil")
    swarm = await open_swarm(
        topo,
        tmp_path,
        *("--relay-reservations-per-ip", str(PER_IP)),
        *("--relay-circuits-per-peer", str(CIRCUITS)),
    )
    job = await start_provider(swarm, tmp_path)
    flood: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job.run, "echo started; sleep 20; echo 7 > /out/seven.txt")
        await job.container_running(docker_client)
        attacker = evil.popen(
            [
                *(sys.executable, "-m", "tests.hosts.relay_flood"),
                *(swarm.bootstrap, job.provider.peer_id),
                *("--reservations", str(FLOOD_RESERVATIONS)),
                *("--circuits", str(FLOOD_CIRCUITS), "--hold", "10"),
            ],
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "attacker.log").open("w"),
            cwd=ROOT,
        )
        out, _ = await trio.to_thread.run_sync(lambda: attacker.communicate(timeout=180))
        assert attacker.returncode == 0, (tmp_path / "attacker.log").read_text()[-3000:]
        flood = json.loads(out.strip().splitlines()[-1])
        await job.done.wait()

    print(f"flood: {flood}")
    # the relay's limits refused the excess
    assert flood["reservations_granted"] <= PER_IP, flood
    assert (
        flood["reservations_refused"] >= FLOOD_RESERVATIONS - PER_IP - flood["reservations_failed"]
    )
    assert flood["reservations_refused"] > 0, flood
    # the honest renter holds one of the provider's circuits throughout
    assert flood["circuits_granted"] <= CIRCUITS - 1, flood
    assert flood["circuits_refused"] > 0, flood
    assert "refused a relay reservation" in (tmp_path / "bootstrap.log").read_text()

    # the honest job kept its circuit: done over the relay, never redialled
    assert job.code == 0, job.stderr[-3000:]
    result = job.result
    assert result["state"] == "succeeded"
    assert result["connection"] == "relayed"
    assert "reconnected" not in job.stderr and "redial" not in job.stderr
    assert result["amount_paid"] == PRICE * result["seconds_billed"]
    assert (tmp_path / "outputs" / "seven.txt").read_bytes() == b"7\n"
    assert await settled(job) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()
