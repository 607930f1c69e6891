"""A provider whose disk fills mid-job (its data folder on a small tmpfs) keeps running,
says "disk full (ENOSPC)", refuses new jobs, acknowledges no receipt it did not store,
and takes jobs again once there is room; what it acknowledged is settled.

Real parts: ``dgpu chain serve``, ``dgpu provider start`` as a child, Docker, a renter in
this process over libp2p.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import trio
from dgpu.node.config import RenterConfig
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.node.renter import JobRefused, ReceiptSigned, Renter, RenterEvent
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity

from tests.contracts_client.support import Node, serve_node
from tests.node.clikit import local_chain, provider_args, provider_process, ready_line
from tests.node.rolekit import job_spec
from tests.node.test_store_faults import fill

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


@pytest.fixture
def data_disk(tmp_path: Path) -> Iterator[Path]:
    """The provider's data folder (``provider_args``: tmp_path/provider-data) on a tmpfs."""
    mount = tmp_path / "provider-data"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def wait_log(log_path: Path, text: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    path = trio.Path(log_path)
    while time.monotonic() < end:
        if text in await path.read_text(errors="replace"):
            return
        await trio.sleep(0.5)
    tail = (await path.read_text())[-3000:]
    raise AssertionError(f"{text!r} not in the provider's log:\n{tail}")


async def test_full_disk_mid_job(
    tmp_path: Path,
    chain_node: Node,
    data_disk: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
) -> None:
    world = await local_chain(chain_node)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    log_path = tmp_path / "provider.log"
    args = provider_args(world, provider_id, tmp_path)
    fillers: list[Path] = []
    with provider_process(args, log_path) as provider:
        ready = await ready_line(provider, log_path)

        def on_event(event: RenterEvent) -> None:
            if isinstance(event, ReceiptSigned) and event.elapsed_s >= 3 and not fillers:
                fillers.append(fill(data_disk))

        with NodeStore.open(tmp_path / "renter.sqlite") as store:
            config = Libp2pConfig(bootstrap=(ready["multiaddrs"][0],))
            async with open_libp2p_network(renter_id, config) as network:
                renter = Renter(
                    identity=renter_id,
                    config=RenterConfig(
                        mint=bytes(chain_node.mint), program_id=bytes(world.client.program_id)
                    ),
                    network=network,
                    escrow=world.escrow,
                    store=store,
                )
                spec = job_spec(
                    "echo started; sleep 300",
                    image=busybox_image,
                    max_price_per_gpu_second=4_000_000,
                )
                result = await renter.run_job(spec, events=on_event)
                assert fillers, "the job ended before the disk was filled"
                assert provider.poll() is None, "a full disk ended the provider"
                await wait_log(log_path, "disk full (ENOSPC)", 30)
                # no new job while receipts cannot be stored, and the renter is told why
                with pytest.raises(JobRefused, match="ENOSPC"):
                    await renter.run_job(
                        job_spec("true", image=busybox_image, max_price_per_gpu_second=4_000_000)
                    )
        assert result.acknowledged > 0
        # every acknowledged receipt is stored (read the provider's own database)
        with NodeStore.open(data_disk / "node.sqlite") as provider_store:
            stored = provider_store.latest_receipt("provider", result.job_id)
        assert stored is not None and stored.cumulative >= result.acknowledged

        fillers[0].unlink()
        await wait_log(log_path, "takes writes again", 30)
        assert provider.poll() is None
    log_text = log_path.read_text()
    assert "cannot rollback" not in log_text

    with provider_process(args, log_path) as again:  # recovery settles what was stored
        await ready_line(again, log_path)
        state = await world.escrow.read_channel(result.channel)
        assert state is not None
        assert result.acknowledged <= state.settled <= result.amount_paid
    await world.chain.aclose()
