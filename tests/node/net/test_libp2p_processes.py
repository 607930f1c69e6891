"""Real libp2p on 127.0.0.1 across processes: the CLI bootstrap peer plus node processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from dgpu.node.net.libp2p.probe import ProbeProcess

from tests.node.net.bootkit import bootstrap_process

pytestmark = pytest.mark.slow

NODES = 10


@asynccontextmanager
async def bootstrap_cli(*extra: str) -> AsyncIterator[dict[str, str]]:
    """``dgpu bootstrap serve --json`` in a child process; yields its JSON line."""
    async with bootstrap_process(*extra) as boot:
        yield boot.info


async def spawn_all(
    stack: AsyncExitStack, labels: list[str], bootstrap: str, psk: bytes | None
) -> list[ProbeProcess]:
    probes: list[ProbeProcess | None] = [None] * len(labels)

    async def one(index: int) -> None:
        probes[index] = await stack.enter_async_context(
            ProbeProcess.spawn(labels[index], bootstrap=(bootstrap,), psk=psk)
        )

    async with trio.open_nursery() as nursery:
        for index in range(len(labels)):
            nursery.start_soon(one, index)
    return [p for p in probes if p is not None]


async def test_ten_node_processes_find_each_others_offers_through_the_dht() -> None:
    psk = os.urandom(32)
    async with bootstrap_cli("--psk", psk.hex()) as boot, AsyncExitStack() as stack:
        assert boot["multiaddr"].endswith(f"/p2p/{boot['peer_id']}")
        nodes = await spawn_all(stack, [f"dht-{i}" for i in range(NODES)], boot["multiaddr"], psk)
        assert all(node.ready["routing_table"] >= 1 for node in nodes)
        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(lambda n=node: n.command("advertise", model="RTX 4090"))
        everyone = {node.peer_id for node in nodes}
        results: dict[str, set[str]] = {}

        async def find(node: ProbeProcess) -> None:
            answer = await node.command("find", model="RTX 4090", limit=20, timeout=30)
            results[node.peer_id] = set(answer["peers"])

        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(find, node)
        for peer, found in results.items():
            assert found == everyone, f"{peer} found {len(found)} of {len(everyone)} offers"
        # Nobody advertises another model.
        assert (await nodes[0].command("find", model="A100", timeout=10))["peers"] == []


async def test_a_node_without_the_private_network_key_cannot_join() -> None:
    psk = os.urandom(32)
    async with bootstrap_cli("--psk", psk.hex()) as boot, AsyncExitStack() as stack:
        member, other = [
            await stack.enter_async_context(
                ProbeProcess.spawn(label, bootstrap=(boot["multiaddr"],), psk=psk)
            )
            for label in ("member", "other-member")
        ]
        await member.command("advertise", model="H100")
        assert (await other.command("find", model="H100", timeout=20))["peers"] == [member.peer_id]
        echo = await other.command("echo", peer=member.peer_id, addrs=[member.multiaddr], n=1)
        assert len(echo["rtt_ms"]) == 1
        for label, key in (("outsider", None), ("wrong-key", os.urandom(32))):
            outsider = await stack.enter_async_context(
                ProbeProcess.spawn(label, bootstrap=(boot["multiaddr"],), psk=key, dial_timeout=3)
            )
            assert outsider.ready["routing_table"] == 0
            assert (await outsider.command("find", model="H100", timeout=5))["peers"] == []
            echo = await outsider.command(
                "echo", peer=member.peer_id, addrs=[member.multiaddr], n=1
            )
            assert echo["error"].startswith(("PeerUnreachable", "NetTimeout"))
