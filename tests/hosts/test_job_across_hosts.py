"""A busybox job end to end across hosts of the lab: discovery (DHT through the bootstrap
peer on the server host) → negotiation → funding → container → receipts → outputs over
libp2p streams → settlement, amounts checked on chain. Real ``dgpu`` processes in their
own namespaces, the escrow in ``dgpu chain serve``, Docker."""

from __future__ import annotations

import hashlib
from pathlib import Path

import docker
import pytest
from dgpu.cli.devnet.netlab import Lab, TopologyName, build_topology
from dgpu.node.net.bulk import BULK_PROTOCOL
from dgpu.protocol.identity import Identity

from tests.hosts.swarm import START_TIMEOUT_S, open_swarm, read_json_line
from tests.node.clikit import PRICE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

EXPECTED_CONNECTION = {
    "public": "direct",
    "nat": "hole-punched",
    "symmetric": "relayed",
    "lossy": "direct",
}
JOB = "echo hi from the job; sleep 2; echo 7 > /out/seven.txt"


async def _job_end_to_end(lab: Lab, tmp_path: Path, name: TopologyName) -> dict[str, object]:
    topo = build_topology(lab, name)
    swarm = await open_swarm(topo, tmp_path)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await swarm.world.fund(provider_id)
    await swarm.world.fund(renter_id, tokens=10**13)
    proc = swarm.start_provider(provider_id)
    ready = read_json_line(proc, tmp_path / "provider.log", START_TIMEOUT_S)
    assert ready["bulk_addr"] == BULK_PROTOCOL
    # never a wildcard nor loopback announced: the provider's own interface address, and
    # behind a NAT a relay circuit on the bootstrap peer
    circuits = [a for a in ready["multiaddrs"] if "/p2p-circuit" in a]
    if topo.provider.router is None:
        assert any(f"/ip4/{topo.provider.ip}/tcp/" in a for a in ready["multiaddrs"]), ready
        assert not circuits
    else:  # found unreachable by dial-back: only the relay circuit is announced
        assert circuits == ready["multiaddrs"], ready
    assert not any("/ip4/0.0.0.0/" in a or "/ip4/127." in a for a in ready["multiaddrs"])

    code, result, stderr = await swarm.run_job(renter_id, JOB)
    assert code == 0, stderr[-3000:]
    assert result["state"] == "succeeded"
    assert result["provider"] == provider_id.address
    assert result["seconds_billed"] >= 2
    assert result["amount_paid"] == PRICE * result["seconds_billed"]
    assert result["search"]["source"] == "peer-to-peer network"
    assert (result["search"]["seen"], result["search"]["matched"]) == (1, 1)
    (output,) = result["outputs"]
    assert output["sha256"] == hashlib.sha256(b"7\n").hexdigest()
    assert (tmp_path / "outputs" / "seven.txt").read_bytes() == b"7\n"
    assert "outputs: 1 file, 2 bytes over the bulk channel" in stderr
    # reached through the relay behind a NAT, then upgraded by DCUtR where the NATs allow
    # (the provider's home router does, a symmetric NAT does not)
    assert result["connection"] == EXPECTED_CONNECTION[name]
    # the provider settles on chain itself when the job ends (no coordinator): wait for it
    # by stopping it politely, which lets it finish the settlement it started
    proc.terminate()
    proc.wait(timeout=60)
    fee_free = result["amount_paid"] * 95 // 100
    assert await swarm.world.tokens(provider_id) == fee_free
    await swarm.world.chain.aclose()
    return result


async def test_public_hosts(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    await _job_end_to_end(lab, tmp_path, "public")


async def test_provider_behind_a_home_router_is_reached_through_the_relay(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    await _job_end_to_end(lab, tmp_path, "nat")
    log = (tmp_path / "provider.log").read_text()
    assert "NOT reachable" in log and "reserved a relay slot" in log
    assert "through relay" in (tmp_path / "renter.log").read_text()


async def test_symmetric_nat_provider_stays_relayed(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    # provider behind a symmetric NAT, renter behind a home router: only the relay works;
    # the renter tried a hole punch, which failed, and the job went on over the relay
    await _job_end_to_end(lab, tmp_path, "symmetric")
    punch = [
        line for line in (tmp_path / "renter.log").read_text().splitlines() if "hole punch" in line
    ]
    assert len(punch) == 1 and "failed" in punch[0] and "staying on the relay" in punch[0], punch


# Captures every frame on an interface until SIGTERM (AF_PACKET: no tcpdump needed).
_CAPTURE = """
import signal, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0)); s.settimeout(0.5)
out = open(sys.argv[2], "wb"); stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("ready", flush=True)
while not stop:
    try:
        out.write(s.recv(65536))
    except socket.timeout:
        pass
out.close()
"""


async def test_the_relay_sees_only_encrypted_bytes(
    lab: Lab, tmp_path: Path, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    import subprocess
    import sys

    # behind a symmetric NAT hole punching fails: the outputs go through the relay
    topo = build_topology(lab, "symmetric")
    capture = tmp_path / "relay.pcap"
    sniffer = topo.server.popen(
        [sys.executable, "-c", _CAPTURE, "wan", str(capture)], stdout=subprocess.PIPE
    )
    assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "ready"
    swarm = await open_swarm(topo, tmp_path)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await swarm.world.fund(provider_id)
    await swarm.world.fund(renter_id, tokens=10**13)
    proc = swarm.start_provider(provider_id)
    read_json_line(proc, tmp_path / "provider.log", START_TIMEOUT_S)
    marker = "MARKER-" + "7f3a9c" * 4  # in the job's stdout and in its output file
    code, result, stderr = await swarm.run_job(
        renter_id, f"echo {marker}; echo {marker} > /out/secret.txt"
    )
    sniffer.terminate()
    sniffer.wait(timeout=10)
    assert code == 0, stderr[-3000:]
    assert result["connection"] == "relayed"
    assert (tmp_path / "outputs" / "secret.txt").read_text().strip() == marker
    seen = capture.read_bytes()
    # the capture did see the relayed traffic (multistream-select runs in clear text
    # before Noise), and never the marker
    assert b"/multistream/1.0.0" in seen and b"/noise" in seen
    assert marker.encode() not in seen
    await swarm.world.chain.aclose()
