"""A hostile peer flooding a circuit relay v2 (run inside a lab host, its own process):

    python -m tests.hosts.relay_flood RELAY_MULTIADDR TARGET_PEER_ID \\
        --reservations N --circuits M --circuit-peers K --hold SECONDS

1. ``N`` fresh peer identities, all from this host's one IP, each ask the relay for a
   reservation (HOP RESERVE) at once;
2. ``K`` more identities together ask for ``M`` circuits to ``TARGET_PEER_ID`` (HOP
   CONNECT) at once.

Once every request is answered, one JSON line says how many were granted and refused;
everything granted is then held for ``SECONDS`` or until stdin closes, whichever comes
first. Speaks the relay protocol with py-libp2p's own messages."""

from __future__ import annotations

import argparse
import json
import os
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
    def __init__(self, expected: int, answered: trio.Event) -> None:
        self.granted = 0
        self.refused = 0
        self.failed = 0
        self.expected = expected
        self.answered = answered
        if not expected:
            answered.set()

    def count(self, what: str, n: int = 1) -> None:
        setattr(self, what, getattr(self, what) + n)
        if self.granted + self.refused + self.failed >= self.expected:
            self.answered.set()


async def _ask(host: IHost, relay: ID, message: HopMessage, tally: Tally, hold: trio.Event) -> None:
    """One HOP request on a new stream; a granted one is held open until ``hold``."""
    try:
        with trio.fail_after(ASK_TIMEOUT_S):
            stream = await host.new_stream(relay, [HOP_PROTOCOL_ID])
            await write_delimited_msg(stream, message)
            answer = await read_delimited_msg(stream, HopMessage)
    except Exception:  # the library's errors are not typed (LIBP2P.md hazard 24): counted
        tally.count("failed")
        return
    status = StatusCode(answer.status) if answer.HasField("status") else StatusCode.OK
    if status != StatusCode.OK:
        tally.count("refused")
        return
    tally.count("granted")
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
        tally.count("failed", len(work))


async def _until_stdin_closes() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    while await stdin.receive_some():
        pass


async def flood(
    relay_addr: str, target: str, reservations: int, circuits: int, peers: int, hold_s: float
) -> None:
    relay = info_from_p2p_addr(multiaddr.Multiaddr(relay_addr))
    listen = "/ip4/0.0.0.0/tcp/0"
    hold = trio.Event()
    booked, circuit = Tally(reservations, trio.Event()), Tally(circuits, trio.Event())
    target_id = ID.from_base58(target).to_bytes()
    async with trio.open_nursery() as nursery:
        for _ in range(reservations):
            reserve = [HopMessage(type=HopMessage.RESERVE)]
            nursery.start_soon(_peer, relay, listen, hold, reserve, booked)
        for k in range(peers):
            connects = [
                HopMessage(type=HopMessage.CONNECT, peer=CircuitPeerId(id=target_id))
                for _ in range(k, circuits, peers)
            ]
            nursery.start_soon(_peer, relay, listen, hold, connects, circuit)
        await booked.answered.wait()
        await circuit.answered.wait()
        print(json.dumps(_summary(booked, circuit)), flush=True)
        with trio.move_on_after(hold_s):
            await _until_stdin_closes()
        hold.set()


def _summary(booked: Tally, circuit: Tally) -> dict[str, int]:
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
    parser.add_argument("--circuit-peers", type=int, default=1)
    parser.add_argument("--hold", type=float, default=20.0)
    args = parser.parse_args()
    trio.run(
        flood,
        *(args.relay, args.target, args.reservations, args.circuits),
        *(args.circuit_peers, args.hold),
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
