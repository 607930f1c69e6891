"""Attacks 2 and 3 of issue 12 over real libp2p sockets on 127.0.0.1: connections from
fresh identities, and silent streams from one peer."""

from __future__ import annotations

from typing import Any

import multiaddr
import trio
from dgpu.node.net import MessageStream
from dgpu.node.net.admission import AdmissionConfig
from dgpu.node.net.errors import NetError
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.node.net.libp2p.config import ConnectionLimits
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS, build_host
from dgpu.protocol import Identity
from dgpu.protocol.messages import JobStatus
from libp2p.peer.peerinfo import info_from_p2p_addr

JOB = bytes(16)
SLOW = "/dgpu/test-slow/1"
ECHO = "/dgpu/test-echo/1"


async def connect_and_leave(target: str) -> bool:
    """A fresh identity connects (full Noise + Yamux handshake), then goes away."""
    host = build_host(Identity.generate(), Libp2pConfig())
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(target))
        try:
            with trio.fail_after(10):
                await host.connect(info)
                await trio.sleep(0.2)  # give a refusing node time to close us
            connected = info.peer_id in host.get_connected_peers()
        except (*LIBP2P_IO_ERRORS, trio.TooSlowError):
            connected = False
        await host.disconnect(info.peer_id)
    return connected


async def wait_until(condition: object, what: str) -> None:
    for _ in range(200):
        if condition():  # type: ignore[operator]
            return
        await trio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_inbound_slots_are_freed_when_the_remote_goes_away() -> None:
    limits = ConnectionLimits(max_inbound=6, reserved=2, max_per_ip=3)
    async with open_libp2p_network(Identity.generate(), Libp2pConfig(connections=limits)) as node:
        policy = node._services.connections
        assert policy is not None
        swarm: Any = node._host.get_network()
        target = f"{node.listen_addrs[0]}/p2p/{node.peer_id}"
        # three rounds of three connections: more than the per-IP cap in total, never
        # more than it at once — every round must get in
        for _ in range(3):
            assert all([await connect_and_leave(target) for _ in range(3)])
            await wait_until(lambda: policy.live == 0, "our slots freed")
            # the library's own inbound slots as well (0.8.1 kept them until the swarm stopped)
            await wait_until(
                lambda: swarm._inbound_limiter.borrowed_tokens == 0, "library slots freed"
            )


async def test_connections_over_the_per_ip_cap_are_refused_and_admitted_again_after() -> None:
    limits = ConnectionLimits(max_inbound=20, reserved=2, max_per_ip=3)
    async with (
        open_libp2p_network(Identity.generate(), Libp2pConfig(connections=limits)) as node,
        trio.open_nursery() as nursery,
    ):
        policy = node._services.connections
        assert policy is not None
        target = f"{node.listen_addrs[0]}/p2p/{node.peer_id}"
        held = trio.Event()
        results: list[bool] = []

        async def hold_one() -> None:
            host = build_host(Identity.generate(), Libp2pConfig())
            async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                info = info_from_p2p_addr(multiaddr.Multiaddr(target))
                await host.connect(info)
                results.append(True)
                await held.wait()
                await host.disconnect(info.peer_id)

        for _ in range(3):
            nursery.start_soon(hold_one)
        await wait_until(lambda: len(results) == 3, "three connections held")
        assert not await connect_and_leave(target)  # a fourth from the same IP
        assert policy.refused["per_ip"] >= 1
        held.set()
        await wait_until(lambda: policy.live == 0, "held connections gone")
        assert await connect_and_leave(target)


async def test_a_stream_flood_from_one_peer_leaves_others_served() -> None:
    admission = AdmissionConfig(max_streams_per_peer=8, rate_per_s=1000, burst=1000)
    release = trio.Event()
    served: list[str] = []

    async def slow(stream: MessageStream, peer: str) -> None:
        served.append(peer)
        await release.wait()

    async def echo(stream: MessageStream, peer: str) -> None:
        await stream.send(await stream.receive())

    node_config = Libp2pConfig(admission=admission)
    async with open_libp2p_network(Identity.generate(), node_config) as node:
        node.serve(SLOW, slow)
        node.serve(ECHO, echo)
        joined = Libp2pConfig(bootstrap=(f"{node.listen_addrs[0]}/p2p/{node.peer_id}",))
        async with (
            open_libp2p_network(Identity.generate(), joined) as flooder,
            open_libp2p_network(Identity.generate(), joined) as honest,
            trio.open_nursery() as nursery,
        ):
            refused: list[str] = []

            async def one_silent_stream() -> None:
                try:
                    stream = await flooder.open_raw_stream(node.peer_id, SLOW)
                    with trio.move_on_after(5):
                        if await stream.receive_some(16) == b"":
                            refused.append("closed")
                except NetError:
                    refused.append("reset")

            for _ in range(40):
                nursery.start_soon(one_silent_stream)
            await wait_until(lambda: len(served) + len(refused) >= 40, "all streams answered")
            assert served.count(flooder.peer_id) == 8  # its cap, no more
            answer = await honest.request(
                node.peer_id, ECHO, JobStatus(job_id=JOB, state="running"), timeout=10
            )
            assert isinstance(answer, JobStatus)
            release.set()
