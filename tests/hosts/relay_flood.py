"""A hostile peer flooding a circuit relay v2 (run inside a lab host, its own process):

    python -m tests.hosts.relay_flood RELAY_MULTIADDR TARGET_PEER_ID \\
        --reservations N --circuits M --hold SECONDS

1. ``N`` fresh peer identities, all from this host's one IP, each ask the relay for a
   reservation (HOP RESERVE) at once;
2. one more identity asks for ``M`` circuits to ``TARGET_PEER_ID`` (HOP CONNECT) at once.

Everything granted is held for ``SECONDS``; then one JSON line says how many requests
were granted and refused. Speaks the relay protocol with py-libp2p's own messages."""

from __future__ import annotations

import argparse
import json
import sys

import multiaddr
import trio
from dgpu.node.net.libp2p import Libp2pConfig
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS, build_host
from dgpu.protocol.identity import Identity
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeerId
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg

ASK_TIMEOUT_S = 20.0


class Tally:
    def __init__(self) -> None:
        self.granted = 0
        self.refused = 0
        self.failed = 0


async def _ask(host: IHost, relay: ID, message: HopMessage, tally: Tally, hold: trio.Event) -> None:
    """One HOP request on a new stream; a granted one is held open until ``hold``."""
    try:
        with trio.fail_after(ASK_TIMEOUT_S):
            stream = await host.new_stream(relay, [HOP_PROTOCOL_ID])
            await write_delimited_msg(stream, message)
            answer = await read_delimited_msg(stream, HopMessage)
    except Exception:  # the library's errors are not typed (LIBP2P.md hazard 24): counted
        tally.failed += 1
        return
    status = StatusCode(answer.status) if answer.HasField("status") else StatusCode.OK
    if status != StatusCode.OK:
        tally.refused += 1
        return
    tally.granted += 1
    await hold.wait()


async def _peer(
    relay: PeerInfo, listen: str, hold: trio.Event, work: list[HopMessage], tally: Tally
) -> None:
    identity = Identity.generate()
    host = build_host(identity, Libp2pConfig())
    try:
        async with host.run(listen_addrs=[multiaddr.Multiaddr(listen)]):
            with trio.fail_after(ASK_TIMEOUT_S):
                await host.connect(relay)
            async with trio.open_nursery() as nursery:
                for message in work:
                    if message.type == HopMessage.RESERVE:
                        message.peer.CopyFrom(CircuitPeerId(id=host.get_id().to_bytes()))
                    nursery.start_soon(_ask, host, relay.peer_id, message, tally, hold)
    except* (*LIBP2P_IO_ERRORS, trio.TooSlowError):
        tally.failed += len(work)


async def flood(
    relay_addr: str, target: str, reservations: int, circuits: int, hold_s: float
) -> dict[str, int]:
    relay = info_from_p2p_addr(multiaddr.Multiaddr(relay_addr))
    listen = "/ip4/0.0.0.0/tcp/0"
    hold = trio.Event()
    booked, circuit = Tally(), Tally()
    target_id = ID.from_base58(target).to_bytes()
    async with trio.open_nursery() as nursery:
        for _ in range(reservations):
            reserve = [HopMessage(type=HopMessage.RESERVE)]
            nursery.start_soon(_peer, relay, listen, hold, reserve, booked)
        connects = [
            HopMessage(type=HopMessage.CONNECT, peer=CircuitPeerId(id=target_id))
            for _ in range(circuits)
        ]
        nursery.start_soon(_peer, relay, listen, hold, connects, circuit)
        await trio.sleep(hold_s)
        hold.set()
    return {
        "reservations_granted": booked.granted,
        "reservations_refused": booked.refused,
        "reservations_failed": booked.failed,
        "circuits_granted": circuit.granted,
        "circuits_refused": circuit.refused,
        "circuits_failed": circuit.failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("relay")
    parser.add_argument("target")
    parser.add_argument("--reservations", type=int, default=12)
    parser.add_argument("--circuits", type=int, default=24)
    parser.add_argument("--hold", type=float, default=20.0)
    args = parser.parse_args()
    result = trio.run(flood, args.relay, args.target, args.reservations, args.circuits, args.hold)
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
