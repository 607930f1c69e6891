"""The normal path across hosts: the coordinator on the public server host. A provider
behind a home router (topology 2) posts its offer to the coordinator; the renter on its
own host finds it through the coordinator's index (not the DHT), reaches the provider
through the relay (then directly, by a hole punch), and the coordinator's settlement
batcher pays the provider on chain. Real processes in the lab's namespaces: ``dgpu
chain serve``, ``dgpu coordinator serve``, ``dgpu bootstrap serve``, ``dgpu provider
start``, ``dgpu run``; Docker."""

from __future__ import annotations

from pathlib import Path

import docker
import httpx
import pytest
import trio
from dgpu.cli.devnet.netlab import Lab, build_topology

from tests.hosts.midjob import start_provider
from tests.hosts.swarm import open_swarm
from tests.node.clikit import PRICE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SETTLED_WAIT_S = 90.0


async def test_discovery_and_settlement_through_the_coordinator_on_the_public_host(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "nat")
    swarm = await open_swarm(topo, tmp_path, coordinator=True)
    assert swarm.coordinator_url is not None and topo.server.ip in swarm.coordinator_url
    job = await start_provider(swarm, tmp_path)
    await job.run("echo hi; sleep 2; echo 7 > /out/seven.txt")

    assert job.code == 0, job.stderr[-3000:]
    result = job.result
    assert result["state"] == "succeeded"
    assert result["connection"] == "hole-punched"  # through the relay, then DCUtR
    assert result["amount_paid"] == PRICE * result["seconds_billed"]
    assert (tmp_path / "outputs" / "seven.txt").read_bytes() == b"7\n"
    assert "matching offers (coordinator)" in job.stderr  # found through its index
    # the coordinator's batcher settles the receipt (the provider stays up meanwhile)
    fee_free = result["amount_paid"] * 95 // 100
    batches: list[str] = []
    async with httpx.AsyncClient(base_url=swarm.coordinator_url, timeout=10) as http:
        for _ in range(int(SETTLED_WAIT_S)):
            page = (await http.get("/api/v1/settlements", params={"limit": "100"})).json()
            batches = [
                str(b["signature"])
                for b in page["batches"]
                if b["state"] == "confirmed"
                and any(i["channel"] == result["channel"] for i in b["items"])
            ]
            if batches:
                break
            await trio.sleep(1)
    assert batches, "the coordinator settled no batch with this job's channel"
    assert await swarm.world.tokens(job.provider) == fee_free
    await swarm.world.chain.aclose()
