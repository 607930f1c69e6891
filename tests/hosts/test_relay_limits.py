"""A relay's per-circuit limit, seen at negotiation (topology 4: the provider behind a
symmetric NAT, so the renter reaches it only through the bootstrap's relay — no hole
punch gets past that NAT).

The relay states each circuit's limits (bytes, seconds) in the STOP CONNECT it sends the
provider; the provider keeps them and refuses, before the agreement and so before any
money moves, a job whose outputs the circuit could not carry — in words naming both
numbers. The renter's tokens are untouched (no channel was opened); a job within the
limit then runs over the relay, paid on chain. Real processes in the lab's namespaces,
the escrow in ``dgpu chain serve``, Docker."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from dgpu.cli.devnet.netlab import Lab, build_topology

from tests.hosts.midjob import settled, start_provider
from tests.hosts.swarm import open_swarm
from tests.node.clikit import PRICE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MIB = 1024 * 1024
CIRCUIT_BYTES = 32 * MIB
RENTER_TOKENS = 10**13


async def test_more_output_than_the_relay_carries_is_refused_before_funding(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "symmetric")
    swarm = await open_swarm(topo, tmp_path, "--relay-circuit-bytes", str(CIRCUIT_BYTES))
    job = await start_provider(swarm, tmp_path)

    # 64 MiB of outputs asked over a 32 MiB circuit: refused at negotiation, in words
    code, result, stderr = await swarm.run_job(
        job.renter, "echo 7 > /out/seven.txt", "--max-output-mb", "64"
    )
    assert code != 0, stderr[-3000:]
    assert result.get("state") != "succeeded", result
    said = stderr + str(result)
    assert f"at most {CIRCUIT_BYTES} bytes" in said, stderr[-3000:]
    assert f"may move {64 * MIB} bytes" in said, stderr[-3000:]
    assert "over_limit" in said, stderr[-3000:]
    # before any money moved: no deposit left the renter's account
    assert await swarm.world.tokens(job.renter) == RENTER_TOKENS
    assert not (tmp_path / "outputs" / "seven.txt").exists()

    # within the limit: runs over the relay, paid on chain
    code, result, stderr = await swarm.run_job(
        job.renter, "echo 7 > /out/seven.txt", "--max-output-mb", "8"
    )
    assert code == 0, stderr[-3000:]
    assert result["state"] == "succeeded"
    assert result["connection"] == "relayed"
    assert result["amount_paid"] == PRICE * result["seconds_billed"]
    assert (tmp_path / "outputs" / "seven.txt").read_bytes() == b"7\n"
    assert await settled(job) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()
