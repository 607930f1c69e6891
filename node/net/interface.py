"""The node's view of the network: one small interface, two implementations.

Node logic (provider and renter roles) talks only to :class:`Network`;
:class:`~dgpu.node.net.libp2p.Libp2pNetwork` runs it over py-libp2p and
:class:`~dgpu.node.net.memory.MemoryNetwork` over an in-memory hub for tests and
simulations. Both enforce the same frame caps, timeouts and offer validation.

Peers are named by their libp2p peer ID string (``12D3KooW...``, see
:attr:`dgpu.protocol.identity.Identity.peer_id`), optionally with multiaddrs to dial
(:meth:`PeerRef.from_offer` takes them from an offer).
"""

# The interface takes explicit per-call timeouts (every read has a deadline by design).
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from dgpu.protocol.identity import peer_id_of
from dgpu.protocol.messages import AnyMessage, Message, Offer

M = TypeVar("M", bound=Message)

NEGOTIATE_PROTOCOL: Final = "/dgpu/negotiate/1.0.0"
METERING_PROTOCOL: Final = "/dgpu/metering/1.0.0"
OFFERS_TOPIC: Final = "/dgpu/offers/1"
OFFER_PROTOCOL: Final = "/dgpu/offer/1.0.0"
"""A provider answers a new stream on this protocol with its current signed offer."""
OFFER_BOOK_PROTOCOL: Final = "/dgpu/offer-book/1.0.0"
"""Any node answers an ``OfferBookQuery`` on this protocol with the offers of that model it
knows, cheapest first (see :mod:`dgpu.node.net.offer_book`)."""
DEFAULT_FIND_TIMEOUT_S: Final = 20.0
DEFAULT_REQUEST_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class PeerRef:
    """A peer to reach: its peer ID and, when known, addresses to dial."""

    peer_id: str
    addrs: tuple[str, ...] = ()

    @classmethod
    def from_offer(cls, offer: Offer) -> PeerRef:
        return cls(peer_id_of(offer.provider), tuple(offer.multiaddrs))

    @classmethod
    def of(cls, peer: PeerRef | str) -> PeerRef:
        return peer if isinstance(peer, PeerRef) else cls(peer)


@dataclass(frozen=True)
class CircuitLimit:
    """What a relay lets one circuit carry, as the relay states it (0: no limit)."""

    data_bytes: int
    """Bytes, both directions together; then the relay closes the circuit."""
    seconds: int
    """The circuit's lifetime."""


class MessageStream(Protocol):
    """A bidirectional stream of length-prefixed canonical messages with one peer.

    Every read has a deadline (``timeout`` or the stream's default); a frame above the
    size cap, a truncated frame or undecodable bytes raise (``FrameError``,
    ``DecodeError``) and the stream should then be reset. Used as an async context
    manager it closes on normal exit and resets on an exception.
    """

    remote_peer: str
    protocol: str
    remote_ip: str
    """The IP address an inbound stream comes from, when the network knows it ("" when it
    does not, or when the connection is relayed): for per-address limits in handlers."""

    async def send(self, message: Message, *, timeout: float | None = None) -> None: ...

    async def receive(self, *, timeout: float | None = None) -> AnyMessage:
        """The next message; ``StreamClosed`` at a clean end of stream, ``NetTimeout``."""
        ...

    async def receive_as(self, kind: type[M], *, timeout: float | None = None) -> M:
        """The next message, which must be of ``kind`` (else ``DecodeError``)."""
        ...

    async def aclose(self) -> None: ...

    async def reset(self) -> None: ...

    async def __aenter__(self) -> MessageStream: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


Handler = Callable[[MessageStream, str], Awaitable[None]]
"""A protocol handler: gets the framed stream and the remote peer ID. When it returns the
stream is closed; when it raises, the error is logged and the stream reset — the node
keeps running whatever a handler or a peer does."""


class OfferSubscription(Protocol):
    """Validated offers from gossip, as they arrive (an async iterator).

    Offers that fail validation never appear; offers arriving faster than the consumer
    reads beyond the buffer are dropped (gossip is best effort). Close it (or use it as an
    async context manager) to unsubscribe.
    """

    def __aiter__(self) -> AsyncIterator[Offer]: ...

    async def __anext__(self) -> Offer: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> OfferSubscription: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class Network(Protocol):
    """A running network endpoint of one node (see the module docstring).

    Obtained from ``open_libp2p_network(...)`` or ``open_memory_network(...)``, async
    context managers that start the endpoint and stop it (cancelling every handler) on
    exit. All methods raise :class:`~dgpu.node.net.errors.NetworkClosed` after that.
    """

    @property
    def peer_id(self) -> str: ...

    @property
    def listen_addrs(self) -> list[str]:
        """Full multiaddrs (with ``/p2p/<peer id>``) others can dial; put them in offers."""
        ...

    def now(self) -> int:
        """Unix seconds as this network sees them (virtual in simulations): use it to date
        and validate offers."""
        ...

    async def advertise(self, offer: Offer, *, timeout: float = DEFAULT_FIND_TIMEOUT_S) -> None:
        """Publish our own signed offer three ways: a DHT provider record under
        ``/dgpu/gpu/<model>``, the offer as the DHT value ``/dgpu/offer/<peer>`` and a
        gossip message on :data:`OFFERS_TOPIC`. Offers expire: call again before
        ``expires_at`` (:func:`~dgpu.node.net.advertising.keep_advertising` does)."""
        ...

    async def find_offers(
        self, model: str, *, limit: int = 20, timeout: float = DEFAULT_FIND_TIMEOUT_S
    ) -> list[Offer]:
        """Offers for GPU ``model``, cheapest first, at most ``limit``: this node's offer
        book (what it heard by gossip) merged with the books of a few peers it is connected
        to, asked at once (one round trip); the DHT when none of them knows an offer of the
        model (see :mod:`dgpu.node.net.offer_book`). Every offer is
        validated (signature, time window, signer = key owner), one (the newest) per
        provider. What is found before ``timeout`` is returned; never raises for a slow
        DHT or a silent peer."""
        ...

    def subscribe_offers(self) -> OfferSubscription:
        """Validated offers from the gossip topic from now on."""
        ...

    def open_stream(
        self, peer: PeerRef | str, protocol: str, *, timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    ) -> AbstractAsyncContextManager[MessageStream]:
        """``async with net.open_stream(peer, proto) as stream:`` a framed stream to a peer
        serving ``protocol``; ``timeout`` bounds the dial and protocol negotiation
        (``PeerUnreachable``, ``NetTimeout``)."""
        ...

    async def request(
        self,
        peer: PeerRef | str,
        protocol: str,
        message: Message,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> AnyMessage:
        """Open a stream, send one message, return the one reply; ``timeout`` bounds all."""
        ...

    def serve(self, protocol: str, handler: Handler) -> None:
        """Run ``handler`` for every inbound stream on ``protocol`` (replacing any earlier
        handler); each call is guarded (see :data:`Handler`) and admitted per peer (see
        :mod:`dgpu.node.net.admission`)."""
        ...

    def protect(self, peer: str) -> None:
        """Keep room for ``peer``'s streams (it has a funded job here): it is not held to
        the per-peer caps and rates. Counted: one :meth:`unprotect` per call."""
        ...

    def unprotect(self, peer: str) -> None: ...

    def circuit_limit(self, peer: str) -> CircuitLimit | None:
        """When ``peer`` is connected to us only through a relay circuit: the limits the
        relay stated for it; None when a direct connection exists, there is no
        connection, or the relay stated none."""
        ...
