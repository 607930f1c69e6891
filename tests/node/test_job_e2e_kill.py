"""A provider killed with SIGKILL mid-job, then restarted (``@pytest.mark.docker``).

The provider runs as ``dgpu provider start`` in a child process against a local chain
(``dgpu chain serve``: the escrow ``.so`` in LiteSVM behind JSON-RPC); the renter runs in
this process over libp2p. The renter records which receipts the provider acknowledged
(stored durably); the provider is killed while its busybox container runs. On restart it
must still hold every acknowledged receipt and settle it on chain, and remove the
container it no longer owns.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import trio
from dgpu.node.config import RenterConfig
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.node.renter import ReceiptSigned, Renter, RenterEvent
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity

from tests.contracts_client.support import Node, serve_node
from tests.node.clikit import (
    PRICE,
    ROOT,
    dgpu,
    local_chain,
    provider_args,
    provider_process,
    ready_line,
)
from tests.node.rolekit import job_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def leftovers(client: docker.DockerClient, owner: str) -> list[str]:
    selector = {"label": f"dgpu.owner={owner}"}
    return [c.name for c in client.containers.list(all=True, filters=selector)]


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


async def test_kill_9_mid_job_loses_no_acknowledged_receipt(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    world = await local_chain(chain_node)
    escrow, client = world.escrow, world.client
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    data_dir = tmp_path / "provider-data"
    log_path = tmp_path / "provider.log"
    args = provider_args(world, provider_id, tmp_path)
    with provider_process(args, log_path) as first:
        ready = await ready_line(first, log_path)
        assert ready["offer"]["simulated"] is True
        events: list[RenterEvent] = []

        def on_event(event: RenterEvent) -> None:
            events.append(event)
            if isinstance(event, ReceiptSigned) and event.elapsed_s >= 5 and first.poll() is None:
                first.send_signal(signal.SIGKILL)

        with NodeStore.open(tmp_path / "renter.sqlite") as store:
            config = Libp2pConfig(bootstrap=(ready["multiaddrs"][0],))
            async with open_libp2p_network(renter_id, config) as network:
                renter = Renter(
                    identity=renter_id,
                    config=RenterConfig(
                        mint=bytes(chain_node.mint), program_id=bytes(client.program_id)
                    ),
                    network=network,
                    escrow=escrow,
                    store=store,
                )
                spec = job_spec(
                    "echo started; sleep 300",
                    image=busybox_image,
                    max_price_per_gpu_second=4_000_000,
                )
                result = await renter.run_job(spec, events=on_event)
        first.wait()
        assert first.returncode == -signal.SIGKILL
    assert result.state == "aborted"
    assert result.acknowledged > 0
    assert result.acknowledged <= result.amount_paid
    # The killed provider left its container behind.
    assert leftovers(docker_client, provider_id.address) != []
    state = await escrow.read_channel(result.channel)
    assert state is not None and state.settled == 0

    with provider_process(args, log_path) as second:
        await ready_line(second, log_path)  # ready = recovered: swept and settled
        assert leftovers(docker_client, provider_id.address) == []
        state = await escrow.read_channel(result.channel)
        assert state is not None
        assert result.acknowledged <= state.settled <= result.amount_paid
        status = await trio.run_process(
            dgpu("provider", "status", "--data-dir", str(data_dir), "--json"),
            capture_stdout=True,
            cwd=ROOT,
        )
    report = json.loads(status.stdout)
    (job,) = report["jobs"]
    assert job["job_id"] == result.job_id.hex()
    assert job["state"] == "stopped" and job["stop_reason"] == "provider_restart"
    assert job["paid"] >= result.acknowledged
    # recovery keeps the seconds its receipts cover (it used to write 0)
    assert job["seconds_billed"] * PRICE <= job["paid"] < (job["seconds_billed"] + 1) * PRICE
    assert job["seconds_billed"] > 0
    assert report["unsettled"] == []
    await world.chain.aclose()
