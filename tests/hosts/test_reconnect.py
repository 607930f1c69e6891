"""A connection that drops mid-job is redialled. The lab cuts the link between the
renter's and the provider's hosts and aborts their TCP connections on both sides (a
router that lost its state); the renter redials for interval + grace.

* healed within the grace period: the renter attaches a new metering stream to the
  running job (the provider takes one from the same renter key for the same channel),
  metering resumes, the job completes and is paid in full — on chain;
* healed too late: the provider has stopped the job for want of receipts and is paid
  exactly what the renter signed; the renter says so in words.

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
from tests.hosts.swarm import open_swarm
from tests.node.clikit import PRICE

pytestmark = [pytest.mark.docker, pytest.mark.slow]


async def _drop_mid_job(
    job: MidJob, client: docker.DockerClient, script: str, away_s: float, *, reset: bool = True
) -> None:
    """Run ``script``; once it runs, cut the link between renter and provider (and with
    ``reset``, abort their connections) for ``away_s``, then heal; wait for the renter's
    result."""
    lab, topo = job.swarm.topology.lab, job.swarm.topology
    async with trio.open_nursery() as nursery:
        nursery.start_soon(job.run, script)
        await job.container_running(client)
        await trio.sleep(3)  # a few receipts first
        lab.cut(topo.renter, topo.provider)
        if reset:
            lab.reset(topo.renter, topo.provider)
        await trio.sleep(away_s)
        lab.heal(topo.renter, topo.provider)
        await job.done.wait()


@pytest.mark.parametrize("reset", [True, False], ids=["connections-aborted", "silent-cut"])
async def test_a_cut_healed_within_grace_is_survived_and_paid_in_full(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str, reset: bool
) -> None:
    """Aborted connections are redialled; a silent cut (packets dropped, connections
    kept) is bridged by TCP's own retransmissions. Either way the job completes."""
    topo = build_topology(lab, "public")
    swarm = await open_swarm(topo, tmp_path)
    job = await start_provider(swarm, tmp_path, "--grace", "20")
    await _drop_mid_job(
        job, docker_client, "echo started; sleep 15; echo 7 > /out/seven.txt", away_s=5, reset=reset
    )  # well within interval + grace (21 s)

    assert job.code == 0, job.stderr[-3000:]
    result = job.result
    assert result["state"] == "succeeded"
    if reset:
        assert "reconnected to the provider" in job.stderr
        assert "the renter is back" in job.provider_log()
    # metering resumed: every second of the job signed, none lost to the cut
    assert result["seconds_billed"] >= 15
    assert result["amount_paid"] == PRICE * result["seconds_billed"]
    (output,) = result["outputs"]
    assert output["sha256"] == hashlib.sha256(b"7\n").hexdigest()
    assert (tmp_path / "outputs" / "seven.txt").read_bytes() == b"7\n"
    assert await settled(job) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()


async def test_a_dropped_connection_past_grace_stops_the_job_paid_what_was_signed(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "public")
    swarm = await open_swarm(topo, tmp_path)
    job = await start_provider(swarm, tmp_path)  # interval 1 s, grace 5 s
    await _drop_mid_job(
        job, docker_client, "echo started; sleep 300", away_s=15
    )  # past interval + grace (6 s)

    assert job.code != 0
    result = job.result
    assert result["state"] == "aborted", job.stderr[-3000:]
    assert result["amount_paid"] > 0
    assert "redial" in result["detail"] and "what was signed" in result["detail"], result
    log = job.provider_log()
    assert "stopping (renter_gone)" in log or "stopping (non_payment)" in log, log[-3000:]
    assert await settled(job) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()
