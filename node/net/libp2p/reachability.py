"""Reachability with proof of key: can a provider be reached at the addresses its offer
lists, and does the peer that answers there hold the offer's key?

The coordinator asks this before it serves an offer (:mod:`dgpu.coordinator.admission`):
a signed offer proves only that someone holds a key, not that anyone can rent from it. The
check dials the offer's own addresses (``/p2p-circuit`` ones through their relay, as a
renter would) and asks for the provider's current offer on ``/dgpu/offer/1.0.0``. The Noise
handshake of that connection fails unless the remote proves the peer ID the dial expects,
which is the offer's key (py-libp2p checks it on the initiator's side), so an address that
answers with another identity is refused before any dgpu byte is read. An answer other than
an offer (``no_capacity``) still proves both facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dgpu.node.net.errors import NetError
from dgpu.node.net.interface import OFFER_PROTOCOL, PeerRef
from dgpu.node.net.libp2p.network import Libp2pNetwork
from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.identity import peer_id_of
from dgpu.protocol.messages import Offer

MAX_ADDRS = 8
"""Addresses of one offer tried at most (an offer could list hundreds of decoys)."""


@dataclass(frozen=True)
class Reach:
    reachable: bool
    detail: str


class ReachabilityProber:
    """Probes providers over ``network`` (a libp2p node of its own: the prober's)."""

    def __init__(self, network: Libp2pNetwork, *, timeout_s: float = 10.0) -> None:
        self.network = network
        self.timeout_s = timeout_s

    async def probe(self, provider: bytes, multiaddrs: Sequence[str]) -> Reach:
        addrs = tuple(multiaddrs[:MAX_ADDRS])
        if not addrs:
            return Reach(False, "the offer lists no address to reach it at")
        peer = peer_id_of(provider)
        timeout = self.timeout_s
        try:
            async with self.network.open_stream(
                PeerRef(peer, addrs), OFFER_PROTOCOL, timeout=timeout
            ) as stream:
                answer = await stream.receive(timeout=timeout)
        except NetError as exc:
            return Reach(False, f"not reached at its addresses as {peer}: {exc}")
        except ProtocolError as exc:
            return Reach(False, f"reached, but its answer is not a dgpu message: {exc}")
        if isinstance(answer, Offer) and answer.provider != provider:
            return Reach(False, "reached, but it answered with another provider's offer")
        kind = self.network.connection_kind(peer)
        return Reach(True, f"reached ({kind}) and proved its key")
