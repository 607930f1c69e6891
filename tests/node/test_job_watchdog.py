"""The container watchdog: a provider killed mid-job (SIGKILL) does not come back, yet its
container stops by itself within interval + grace of the last durable receipt; the
provider's next life removes it and settles what it acknowledged.

Real parts: ``dgpu chain serve``, ``dgpu provider start`` as a child process, Docker, a
renter in this process over libp2p.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import trio
from dgpu.node.config import RenterConfig
from dgpu.node.executors import DockerConfig, container_options
from dgpu.node.executors.spec import JobSpec
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.node.renter import ReceiptSigned, Renter, RenterEvent
from dgpu.node.store import NodeStore
from dgpu.protocol.identity import Identity

from tests.contracts_client.support import Node, serve_node
from tests.node.clikit import local_chain, provider_args, provider_process, ready_line
from tests.node.rolekit import job_spec

INTERVAL_S, GRACE_S = 1, 2  # provider_args' --interval / --grace
# what the bound may take beyond interval + grace: one health-check period, the engine's
# exec of the check and the container's stop, on a loaded 2-core machine
SLACK_S = 15.0


def running(client: docker.DockerClient, owner: str) -> list[str]:
    selector = {"label": f"dgpu.owner={owner}"}
    return [c.name for c in client.containers.list(filters=selector)]  # running only


def every(client: docker.DockerClient, owner: str) -> list[str]:
    selector = {"label": f"dgpu.owner={owner}"}
    return [c.name for c in client.containers.list(all=True, filters=selector)]


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


def test_container_options_carry_the_watchdog(tmp_path: Path) -> None:
    spec = JobSpec(job_id="j1", image="img", command=("true",), watchdog_s=3.0)
    config = DockerConfig(owner="me", watchdog_busybox=Path("/bin/busybox"))
    options = container_options(spec, config, "run1", tmp_path)
    check = options["healthcheck"]
    assert check["test"][:2] == ["CMD", "/.dgpu-bin/busybox"]
    assert "kill -TERM -1" in check["test"][-1] and "kill -KILL -1" in check["test"][-1]
    mounts = {m["Target"]: m for m in options["mounts"]}
    assert mounts["/.dgpu-watchdog"]["Source"] == str(tmp_path)
    assert mounts["/.dgpu-watchdog"]["ReadOnly"] is True
    assert "healthcheck" not in container_options(
        JobSpec(job_id="j1", image="img", command=("true",)), config, "run1", tmp_path
    )


@pytest.mark.docker
@pytest.mark.slow
async def test_killed_provider_leaves_no_running_container(
    tmp_path: Path, chain_node: Node, docker_client: docker.DockerClient, busybox_image: str
) -> None:
    world = await local_chain(chain_node)
    provider_id, renter_id = Identity.generate(), Identity.generate()
    await world.fund(provider_id)
    await world.fund(renter_id, tokens=10**13)
    log_path = tmp_path / "provider.log"
    args = provider_args(world, provider_id, tmp_path)
    killed_at: list[float] = []
    with provider_process(args, log_path) as first:
        ready = await ready_line(first, log_path)

        def on_event(event: RenterEvent) -> None:
            if isinstance(event, ReceiptSigned) and event.elapsed_s >= 3 and not killed_at:
                first.send_signal(signal.SIGKILL)
                killed_at.append(time.monotonic())

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
        first.wait()
        assert first.returncode == -signal.SIGKILL
    assert result.acknowledged > 0

    # Nobody restarts the provider: the container must stop by itself.
    bound = INTERVAL_S + GRACE_S + SLACK_S
    while running(docker_client, provider_id.address):
        assert time.monotonic() - killed_at[0] < bound, (
            f"the container still runs {bound:.0f}s after the provider was killed"
        )
        await trio.sleep(0.5)
    print(f"container stopped {time.monotonic() - killed_at[0]:.1f}s after the kill")
    assert every(docker_client, provider_id.address) != []  # stopped, not yet removed

    with provider_process(args, log_path) as second:
        await ready_line(second, log_path)  # ready = recovered: swept and settled
        assert every(docker_client, provider_id.address) == []
        state = await world.escrow.read_channel(result.channel)
        assert state is not None
        assert result.acknowledged <= state.settled <= result.amount_paid
    await world.chain.aclose()
