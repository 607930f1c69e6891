"""Attack 1 of issue 12: any bytes on any protocol a node serves, from a remote peer.

A real ``dgpu bootstrap serve`` process (the same libp2p stack as providers and ``--p2p``
renters) is fuzzed over real sockets on every protocol it lists in identify — gossipsub,
Kademlia, identify, ping, dgpu's own — with garbage, truncated and oversized frames. The
process must stay alive and still answer an honest peer afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from dgpu.node.net.errors import NetError
from dgpu.node.net.interface import OFFER_PROTOCOL
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.node.net.libp2p.guard import StrikeBook
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS
from dgpu.node.net.libp2p.network import Libp2pNetwork
from dgpu.protocol import Identity
from dgpu.protocol.messages import ErrorMessage, JobStatus
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from tests.node.net.bootkit import BootstrapProcess, bootstrap_process

pytestmark = pytest.mark.slow

JOB = bytes(16)

# Frames as a hostile peer sends them. Length prefixes are unsigned varints.
FRAMES: dict[str, bytes] = {
    # 5 bytes: a 4-byte frame that is no protobuf/msgpack message (the killer)
    "garbage": b"\x04\xff\xff\xff\xff",
    # a field tag with a length running past the end of the frame
    "bad-protobuf": b"\x03\x0a\x7f\x01",
    # a 100-byte frame announced, 10 bytes sent, then the stream closed
    "truncated": b"\x64" + b"\x00" * 10,
    # a 16 MiB frame announced (above every limit), 64 KiB of it sent
    "oversized": b"\x80\x80\x80\x08" + b"\x01" * 65_536,
    # a varint that never ends
    "endless-varint": b"\xff" * 64,
    # not even a frame: text
    "text": b"GET / HTTP/1.1\r\n\r\n",
}


@asynccontextmanager
async def attacker(boot: BootstrapProcess) -> AsyncIterator[Libp2pNetwork]:
    config = Libp2pConfig(bootstrap=(boot.multiaddr,), read_timeout_s=2.0)
    async with open_libp2p_network(Identity.generate(), config) as net:
        yield net


async def served_protocols(net: Libp2pNetwork, peer: str) -> list[str]:
    """What ``peer`` lists in identify (as this node's peerstore learned it)."""
    peer_id = ID.from_base58(peer)
    await net.connect(peer)
    for _ in range(100):  # identify runs in the background after connecting
        protocols = net._host.get_peerstore().get_protocols(peer_id)
        if protocols:
            return sorted(str(p) for p in protocols)
        await trio.sleep(0.05)
    raise AssertionError(f"{peer} listed no protocol in identify")


async def send_frame(net: Libp2pNetwork, peer: str, protocol: str, frame: bytes) -> str:
    """Open ``protocol`` on ``peer``, write ``frame``, close; how it ended (for the log)."""
    outcome = "timed out"
    with trio.move_on_after(5):
        try:
            await net.connect(peer, timeout=5)
            stream = await net._host.new_stream(ID.from_base58(peer), [TProtocol(protocol)])
            await stream.write(frame)
            await stream.close()
            outcome = "sent"
            with trio.move_on_after(1):
                await stream.read(4096)
        except (*LIBP2P_IO_ERRORS, NetError) as exc:
            outcome = f"refused: {type(exc).__name__}"
    return outcome


async def honest_request_answered(boot: BootstrapProcess) -> bool:
    async with attacker(boot) as honest:
        answer = await honest.request(
            boot.peer_id, OFFER_PROTOCOL, JobStatus(job_id=JOB, state="running"), timeout=10
        )
    return isinstance(answer, ErrorMessage) and answer.code == "no_capacity"


async def test_bad_frames_on_every_listed_protocol_do_not_stop_the_node() -> None:
    async with bootstrap_process() as boot:
        async with attacker(boot) as net:
            protocols = await served_protocols(net, boot.peer_id)
            assert "/meshsub/1.1.0" in protocols
            assert any(p.startswith("/ipfs/kad/") for p in protocols)
            assert OFFER_PROTOCOL in protocols
            outcomes: dict[tuple[str, str], str] = {}
            for protocol in protocols:
                for name, frame in FRAMES.items():
                    outcomes[protocol, name] = await send_frame(net, boot.peer_id, protocol, frame)
                    assert boot.alive, f"node died after {name} on {protocol}"
        # every frame reached the node at least once (the test did attack)
        assert any(o == "sent" for o in outcomes.values()), outcomes
        assert boot.alive
        assert await honest_request_answered(boot)
        assert boot.alive


def test_strikes_disconnect_only_a_repeat_offender_within_the_window() -> None:
    now = [0.0]
    book = StrikeBook(strikes_to_disconnect=3, window_s=10, clock=lambda: now[0], max_peers=2)
    assert not book.strike("a")
    assert not book.strike("a")
    now[0] = 11.0  # the first two strikes left the window
    assert not book.strike("a")
    assert not book.strike("a")
    assert book.strike("a")
    assert not book.strike("a")  # counting starts again after a disconnect
    for peer in ("b", "c", "d"):  # memory stays bounded under fresh identities
        book.strike(peer)
    assert len(book._strikes) == 2
