"""Topology 3 (renter and provider each behind a home router): the renter reaches the
provider through the relay on the bootstrap peer, DCUtR punches a hole through both NATs,
and the outputs move on the direct connection — not through the relay. Real ``dgpu``
processes in their namespaces, the escrow in ``dgpu chain serve``, Docker."""

from __future__ import annotations

import hashlib
from pathlib import Path

import docker
import pytest
from dgpu.cli.devnet.netlab import Host, Lab, build_topology
from dgpu.protocol.identity import Identity

from tests.hosts.swarm import START_TIMEOUT_S, open_swarm, read_json_line
from tests.node.clikit import PRICE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OUTPUT_BYTES = 16 * 1024 * 1024


def wan_rx_bytes(host: Host) -> int:
    """Bytes ``host`` received on its link to the lab's internet (kernel counter)."""
    return int(host.run("cat", "/sys/class/net/wan/statistics/rx_bytes"))


async def test_double_nat_outputs_move_on_a_hole_punched_connection(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    topo = build_topology(lab, "double-nat")
    assert topo.provider.router is not None and topo.renter.router is not None
    swarm = await open_swarm(topo, tmp_path)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await swarm.world.fund(provider_id)
    await swarm.world.fund(renter_id, tokens=10**13)
    proc = swarm.start_provider(provider_id)
    ready = read_json_line(proc, tmp_path / "provider.log", START_TIMEOUT_S)
    # unreachable by dial-back: the provider announces its relay circuit only
    assert ready["multiaddrs"] and all("/p2p-circuit" in a for a in ready["multiaddrs"]), ready

    relay_rx_before = wan_rx_bytes(topo.server)
    code, result, stderr = await swarm.run_job(
        renter_id, f"sleep 2; head -c {OUTPUT_BYTES} /dev/urandom > /out/blob.bin"
    )
    relay_rx = wan_rx_bytes(topo.server) - relay_rx_before
    assert code == 0, stderr[-3000:]
    assert result["state"] == "succeeded"
    assert result["connection"] == "hole-punched"
    (output,) = result["outputs"]
    blob = (tmp_path / "outputs" / "blob.bin").read_bytes()
    assert len(blob) == OUTPUT_BYTES
    assert output["sha256"] == hashlib.sha256(blob).hexdigest()

    # the renter reached the provider through the relay first, then directly: the
    # connection it punched goes to the provider's router's public address, no circuit
    assert "through relay" in stderr
    punched = [line for line in stderr.splitlines() if "hole punch to" in line]
    assert punched and "direct connection to" in punched[0], punched
    target = punched[0].split("direct connection to ", 1)[1].split()[0]
    assert target.startswith(f"/ip4/{topo.provider.public_ip}/tcp/"), target
    assert "/p2p-circuit" not in target
    # and the relay's host did not carry the output (it would have received it in full)
    assert relay_rx < OUTPUT_BYTES // 4, relay_rx

    # money: the provider settles on chain itself when stopped politely
    assert result["seconds_billed"] >= 2
    assert result["amount_paid"] == PRICE * result["seconds_billed"]
    proc.terminate()
    proc.wait(timeout=60)
    assert await swarm.world.tokens(provider_id) == result["amount_paid"] * 95 // 100
    await swarm.world.chain.aclose()
