"""A partition mid-job: iptables DROP between the renter's and the provider's hosts while
the job's container runs. The provider stops the job for want of receipts (within
interval + grace, its own rule; its log says why) and settles exactly the last receipt
the renter signed — read on chain; the renter says in words that it lost the provider.
Real ``dgpu`` processes in the lab's namespaces, Docker, the escrow in ``dgpu chain
serve``; the chain stays reachable from both sides of the cut."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
import trio
from dgpu.cli.devnet.netlab import Lab, build_topology

from tests.hosts.midjob import settled, start_provider
from tests.hosts.swarm import open_swarm

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LONG_JOB = "echo started; sleep 300; echo never"


async def test_partition_mid_job_stops_the_job_and_pays_what_was_signed(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "public")
    swarm = await open_swarm(topo, tmp_path)
    job = await start_provider(swarm, tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job.run, LONG_JOB)
        await job.container_running(docker_client)
        await trio.sleep(3)  # a few receipts signed before the cut
        lab.cut(topo.renter, topo.provider)
        await job.done.wait()

    assert job.code != 0
    result = job.result
    assert result["state"] == "aborted", job.stderr[-3000:]
    assert result["amount_paid"] > 0, "receipts were signed before the cut"
    # the renter says what happened, in words
    detail = result["detail"]
    assert "lost the provider" in detail or "went silent" in detail, result
    assert "what was signed before is what it is paid" in detail, result
    # the provider stopped the job for want of receipts, not because it ended
    log = job.provider_log()
    assert "stopping (non_payment)" in log or "stopping (renter_gone)" in log, log[-3000:]
    # paid exactly what the renter signed last (the chain's 5 % fee taken)
    assert await settled(job) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()
