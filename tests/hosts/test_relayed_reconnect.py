"""A relayed connection that drops mid-job (topology 4: the provider behind a symmetric
NAT, so the renter reaches it only through the bootstrap's relay). The renter's TCP
connection to the relay — which carries the circuit, and so the job's metering stream —
is aborted while the container runs (``ss -K``, as a router that lost its state would).

* the relay still reachable: the renter dials the circuit again, attaches a new metering
  stream, and the job completes paid in full, on chain;
* the relay cut off from the renter (its libp2p port dropped; the chain, on the same host,
  stays reachable): the provider stops the job for want of receipts and is paid exactly
  what the renter signed; the renter says so in words.

Real ``dgpu`` processes in the lab's namespaces, Docker, the escrow in ``dgpu chain
serve``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import docker
import pytest
import trio
from dgpu.cli.devnet.netlab import Lab, build_topology

from tests.hosts.midjob import MidJob, settled, start_provider
from tests.hosts.swarm import BOOTSTRAP_PORT, open_swarm
from tests.node.clikit import PRICE

pytestmark = [pytest.mark.docker, pytest.mark.slow]


async def _drop_circuit(
    job: MidJob, client: docker.DockerClient, script: str, *, cut: bool
) -> None:
    """Run ``script``; once it runs, abort the renter's connection to the relay (with
    ``cut``, first drop every packet to the relay's libp2p port, for good)."""
    renter, server = job.swarm.topology.renter, job.swarm.topology.server
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job.run, script)
        await job.container_running(client)
        await trio.sleep(3)  # a few receipts first
        if cut:
            to_relay = ("-d", server.public_ip, "-p", "tcp", "--dport", str(BOOTSTRAP_PORT))
            renter.run("iptables", "-I", "OUTPUT", *to_relay, "-j", "DROP")
        renter.run("ss", "-K", "dst", server.public_ip, "dport", "=", f":{BOOTSTRAP_PORT}")
        await job.done.wait()


async def test_a_dropped_circuit_is_redialled_through_the_relay_and_paid_in_full(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "symmetric")
    swarm = await open_swarm(topo, tmp_path)
    job = await start_provider(swarm, tmp_path, "--grace", "20")
    await _drop_circuit(
        job, docker_client, "echo started; sleep 15; echo 7 > /out/seven.txt", cut=False
    )

    assert job.code == 0, job.stderr[-3000:]
    result = job.result
    assert result["state"] == "succeeded"
    assert result["connection"] == "relayed"
    assert "reconnected to the provider" in job.stderr
    assert "the renter is back" in job.provider_log()
    # metering resumed: every second of the job signed, none lost to the drop
    assert result["seconds_billed"] >= 15
    assert result["amount_paid"] == PRICE * result["seconds_billed"]
    (output,) = result["outputs"]
    assert output["sha256"] == hashlib.sha256(b"7\n").hexdigest()
    assert await settled(job) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()


async def test_a_relay_cut_past_grace_stops_the_job_paid_what_was_signed(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "symmetric")
    swarm = await open_swarm(topo, tmp_path)
    job = await start_provider(swarm, tmp_path)  # interval 1 s, grace 5 s
    await _drop_circuit(job, docker_client, "echo started; sleep 300", cut=True)

    assert job.code != 0
    result = job.result
    assert result["state"] == "aborted", job.stderr[-3000:]
    assert result["amount_paid"] > 0, "receipts were signed before the cut"
    assert "what was signed" in result["detail"], result
    log = job.provider_log()
    assert "stopping (renter_gone)" in log or "stopping (non_payment)" in log, log[-3000:]
    assert await settled(job) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()
