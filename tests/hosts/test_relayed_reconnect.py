"""A relayed connection that drops mid-job is redialled through the relay (topology 4:
the provider behind a symmetric NAT, so the renter reaches it only through the
bootstrap's relay). The renter's TCP connection to the relay — which carries the circuit,
and so the job's metering stream — is aborted while the container runs (``ss -K``, as a
router that lost its state would); the renter dials the circuit again, attaches a new
metering stream, and the job completes paid in full, on chain. Real ``dgpu`` processes in
the lab's namespaces, Docker, the escrow in ``dgpu chain serve``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import docker
import pytest
import trio
from dgpu.cli.devnet.netlab import Lab, build_topology

from tests.hosts.midjob import settled, start_provider
from tests.hosts.swarm import BOOTSTRAP_PORT, open_swarm
from tests.node.clikit import PRICE

pytestmark = [pytest.mark.docker, pytest.mark.slow]


async def test_a_dropped_circuit_is_redialled_through_the_relay_and_paid_in_full(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "symmetric")
    swarm = await open_swarm(topo, tmp_path)
    job = await start_provider(swarm, tmp_path, "--grace", "20")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job.run, "echo started; sleep 15; echo 7 > /out/seven.txt")
        await job.container_running(docker_client)
        await trio.sleep(3)  # a few receipts first
        # the renter's connection to the relay, and with it the circuit, is aborted
        relay = ("dst", topo.server.public_ip, "dport", "=", f":{BOOTSTRAP_PORT}")
        topo.renter.run("ss", "-K", *relay)
        await job.done.wait()

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
