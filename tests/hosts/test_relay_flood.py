"""A hostile peer floods the bootstrap's circuit relay, then an honest job runs through
it (topology 4: the provider behind a symmetric NAT, so the job stays on the relay —
no hole punch takes it off).

The attacker, on a host of its own, asks for reservations under many fresh peer IDs from
its one IP and, under several more, for every circuit the relay allows to the honest
provider, all at once (``relay_flood.py``, a real py-libp2p process speaking HOP), and
holds what it got. The relay's limits (reservations per IP, circuits per source peer and
per source IP — ours —, circuits per reserved peer) refuse the excess, so an honest
renter arriving during the flood still gets a circuit: its job completes over the relay,
paid on chain. Without the per-source limit the attacker holds all of the provider's
circuits and the renter is refused. The attacker's circuits then end while the honest job
runs: its circuit stays (py-libp2p's relay closed the latest circuit to the same peer
whenever another one ended; ``relay._PerCircuit``), no reconnect needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import docker
import pytest
import trio
from dgpu.cli.devnet.netlab import Lab, build_topology

from tests.hosts.midjob import settled, start_provider
from tests.hosts.swarm import open_swarm, read_json_line
from tests.node.clikit import PRICE, ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PER_IP = 2
CIRCUITS = 4
PER_SOURCE = 2
FLOOD_RESERVATIONS = 10
FLOOD_CIRCUITS = 12
FLOOD_PEERS = 3
FLOOD_TIMEOUT_S = 120.0


async def test_a_relay_flood_leaves_an_honest_renter_a_circuit_to_the_provider(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "symmetric")
    evil = lab.public("evil")
    swarm = await open_swarm(
        topo,
        tmp_path,
        *("--relay-reservations-per-ip", str(PER_IP)),
        *("--relay-circuits-per-peer", str(CIRCUITS)),
        *("--relay-circuits-per-source", str(PER_SOURCE)),
    )
    job = await start_provider(swarm, tmp_path)
    attacker_log = tmp_path / "attacker.log"
    attacker = evil.popen(
        [
            *(sys.executable, "-m", "tests.hosts.relay_flood"),
            *(swarm.bootstrap, job.provider.peer_id),
            *("--reservations", str(FLOOD_RESERVATIONS)),
            *("--circuits", str(FLOOD_CIRCUITS), "--circuit-peers", str(FLOOD_PEERS)),
            *("--hold", "600"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=attacker_log.open("w"),
        cwd=ROOT,
    )
    # every request answered; what was granted is held until stdin closes
    flood = await trio.to_thread.run_sync(
        lambda: read_json_line(attacker, attacker_log, FLOOD_TIMEOUT_S)
    )
    print(f"flood: {flood}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job.run, "echo started; sleep 12; echo 7 > /out/seven.txt")
        await job.container_running(docker_client)
        await trio.sleep(2)
        # the attacker's circuits to the provider end while the honest one carries the
        # job: each circuit's clean-up must close its own streams only
        assert attacker.stdin is not None
        attacker.stdin.close()
        await trio.to_thread.run_sync(lambda: attacker.wait(60))
        await job.done.wait()
    assert attacker.returncode == 0, attacker_log.read_text()[-3000:]

    # the relay's limits refused the excess
    assert flood["reservations_granted"] <= PER_IP, flood
    assert (
        flood["reservations_refused"] >= FLOOD_RESERVATIONS - PER_IP - flood["reservations_failed"]
    )
    assert flood["reservations_refused"] > 0, flood
    # the attacker's one IP got no more than its share of the provider's circuits
    assert flood["circuits_granted"] <= PER_SOURCE, flood
    assert flood["circuits_refused"] >= FLOOD_CIRCUITS - PER_SOURCE - flood["circuits_failed"]
    assert flood["circuits_refused"] > 0, flood
    # the honest renter, arriving during the flood, got a circuit (refused without
    # the per-source limit: the attacker held all the provider's circuits)
    assert job.code == 0, job.stderr[-3000:]
    result = job.result
    assert result["state"] == "succeeded"
    assert result["connection"] == "relayed"
    assert "reconnected" not in job.stderr and "redial" not in job.stderr
    assert result["amount_paid"] == PRICE * result["seconds_billed"]
    assert (tmp_path / "outputs" / "seven.txt").read_bytes() == b"7\n"
    bootstrap_log = (tmp_path / "bootstrap.log").read_text()
    assert "refused a relay reservation" in bootstrap_log
    assert "refused a relay circuit from" in bootstrap_log
    assert await settled(job) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()
