"""What both networks share: handler isolation, offer fan-out, and the client side of a
stream (:class:`StreamClient`: ``open_stream``/``request``/``subscribe_offers`` over each
network's own way to dial).

A handler that raises, or a peer that sends garbage, must never take the node down
(with py-libp2p an exception escaping a stream handler kills the whole swarm). Every
inbound stream runs through :func:`run_guarded`.
"""

# Timeouts are explicit per-call parameters here, as in the Network interface they serve.
# ruff: noqa: ASYNC109

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio
from dgpu.node.net.admission import StreamAdmission
from dgpu.node.net.errors import NetError, NetTimeout
from dgpu.node.net.framing import FramedStream
from dgpu.node.net.interface import (
    DEFAULT_FIND_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    OFFER_BOOK_PROTOCOL,
    CircuitLimit,
    Handler,
    MessageStream,
    PeerRef,
)
from dgpu.node.net.offer_book import OfferBook, read_book_answer, serve_book
from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.messages import AnyMessage, ErrorMessage, Message, Offer

log = logging.getLogger(__name__)

STRAGGLER_GRACE_S = 0.25
"""Least time the other peers asked for their offer book get after one answered in full."""

# Errors a misbehaving or departing peer causes: logged quietly, not as bugs.
PEER_ERRORS = (NetError, ProtocolError)


async def run_guarded(handler: Handler, stream: FramedStream, admission: StreamAdmission) -> None:
    """Run one inbound stream's handler; close the stream after, reset it on any error.

    A stream ``admission`` refuses (too many at once, from this peer or in all; too many
    per second from this peer) is reset before any of its bytes is read. Only
    ``trio.Cancelled`` (the network shutting down) and other ``BaseException``s propagate.
    """
    peer = stream.remote_peer
    refused = admission.try_admit(peer)
    if refused is not None:
        # debug, not warning: a flood would otherwise flood the log as well
        log.debug("resetting %s stream from %s: over the %s limit", stream.protocol, peer, refused)
        await stream.reset()
        return
    try:
        await handler(stream, stream.remote_peer)
    except PEER_ERRORS:
        log.info(
            "handler for %s from %s stopped on a peer error",
            stream.protocol,
            stream.remote_peer,
            exc_info=True,
        )
        await stream.reset()
    except Exception:  # handler boundary: a bug must not kill the node
        log.exception("handler for %s from %s failed", stream.protocol, stream.remote_peer)
        await stream.reset()
    else:
        with trio.move_on_after(stream.write_timeout) as scope:
            scope.shield = True
            try:
                await stream.aclose()
            except NetError:
                log.debug(
                    "closing %s stream from %s failed",
                    stream.protocol,
                    stream.remote_peer,
                    exc_info=True,
                )
    finally:
        admission.release(peer)


class OfferFanout:
    """Delivers validated offers to local subscribers; a slow subscriber loses offers."""

    def __init__(self, buffer: int, now: Callable[[], int]) -> None:
        self._buffer = buffer
        self._now = now
        self._subscribers: set[trio.MemorySendChannel[Offer]] = set()
        self.dropped = 0

    @property
    def subscribed(self) -> bool:
        return bool(self._subscribers)

    def publish_nowait(self, offer: Offer) -> None:
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(offer)
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(channel)

    def subscribe(self) -> Subscription:
        send, receive = trio.open_memory_channel[Offer](self._buffer)
        self._subscribers.add(send)
        return Subscription(receive, self._now, lambda: self._subscribers.discard(send))

    def close(self) -> None:
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()


class Subscription:
    """An :class:`~dgpu.node.net.interface.OfferSubscription`. Offers are fully validated
    on arrival; as they are read only their expiry is checked again (one may have expired
    while buffered)."""

    def __init__(
        self,
        channel: trio.MemoryReceiveChannel[Offer],
        now: Callable[[], int],
        on_close: Callable[[], None],
    ) -> None:
        self._channel = channel
        self._now = now
        self._on_close = on_close

    def __aiter__(self) -> AsyncIterator[Offer]:
        return self

    async def __anext__(self) -> Offer:
        while True:
            try:
                offer = await self._channel.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise StopAsyncIteration from None
            if offer.expires_at > self._now():
                return offer

    async def aclose(self) -> None:
        self._on_close()
        await self._channel.aclose()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


OpenStream = Callable[..., AbstractAsyncContextManager[MessageStream]]


class StreamClient:
    """What both networks share of :class:`~dgpu.node.net.interface.Network`, written once:
    a network provides ``_fanout``, ``_book``, ``_check_open``, ``_open_framed`` (dial,
    negotiate the protocol, frame the stream), ``_book_peers`` and ``_find_in_dht``, and
    gets ``open_stream``, ``request``, ``subscribe_offers`` and ``find_offers``."""

    _fanout: OfferFanout
    _book: OfferBook
    _peer_id: str
    _admission: StreamAdmission
    _advertised: Offer | None = None
    """The offer this node advertised last: what it answers on ``OFFER_PROTOCOL``."""

    def now(self) -> int:
        raise NotImplementedError

    async def _serve_offer(self, stream: MessageStream, peer: str) -> None:
        """``OFFER_PROTOCOL``: answer with this node's current offer (asked by renters that
        know it, and by a coordinator checking it can reach the offer's provider)."""
        offer = self._advertised
        if offer is None or offer.expires_at <= self.now():
            await stream.send(ErrorMessage(code="no_capacity", message="no current offer"))
        else:
            await stream.send(offer)

    async def find_offers(
        self, model: str, *, limit: int = 20, timeout: float = DEFAULT_FIND_TIMEOUT_S
    ) -> list[Offer]:
        """See :meth:`~dgpu.node.net.interface.Network.find_offers`."""
        self._check_open()
        if not self._book.config.enabled:
            return await self._find_in_dht(model, limit, timeout)
        deadline = trio.current_time() + timeout
        ask_timeout = min(timeout, self._book.config.ask_timeout_s)
        await self._ask_books(model, limit, ask_timeout)
        # the DHT only when nobody (this node included) knows an offer of the model: a walk
        # finds 20 providers at the most and can take the whole timeout on a busy node,
        # while a partial answer or this node's own gossip already names some
        if not self._book.find(model, now=self.now(), limit=1):
            remaining = deadline - trio.current_time()
            if remaining > 0:
                for offer in await self._find_in_dht(model, limit, remaining):
                    self._book.add(offer, now=self.now())
        return self._book.find(model, now=self.now(), limit=limit)

    def _remember_offer(self, offer: Offer) -> None:
        """An offer this node heard or found (validated): into its book."""
        if self._book.config.enabled:
            self._book.add(offer, now=self.now())

    async def _serve_book(self, stream: MessageStream, peer: str) -> None:
        """``OFFER_BOOK_PROTOCOL``: the offers of the model asked, from this node's book."""
        await serve_book(self._book, stream, now=self.now())

    async def _ask_books(self, model: str, limit: int, timeout: float) -> None:
        """Ask :meth:`_book_peers` (at most ``peers_asked``, all at once) for their offers
        of ``model`` into this node's book. What a peer sent is kept also when it does not
        finish. Once one peer has answered in full, the others get as long again as it took
        (at least :data:`STRAGGLER_GRACE_S`), then are cut: answers mostly repeat each other,
        and a starved peer would otherwise hold every search to ``timeout``."""
        first = trio.Event()
        start = trio.current_time()

        async def ask(peer: PeerRef) -> None:
            received: list[Offer] = []
            try:
                with trio.move_on_after(timeout):
                    async with self.open_stream(
                        peer, OFFER_BOOK_PROTOCOL, timeout=timeout
                    ) as stream:
                        _, complete = await read_book_answer(
                            stream,
                            model,
                            limit=limit,
                            now=self.now(),
                            timeout=timeout,
                            book=self._book,
                            into=received,
                        )
                    if complete:
                        first.set()
            except PEER_ERRORS as exc:
                log.debug("peer %s did not give its offer book: %s", peer.peer_id, exc)
            finally:
                for offer in received:
                    self._book.add(offer, now=self.now())

        async def cut_stragglers(scope: trio.CancelScope) -> None:
            await first.wait()
            await trio.sleep(max(trio.current_time() - start, STRAGGLER_GRACE_S))
            scope.cancel()

        async with trio.open_nursery() as outer:
            outer.start_soon(cut_stragglers, outer.cancel_scope)
            async with trio.open_nursery() as asks:
                for peer in self._book_peers()[: self._book.config.peers_asked]:
                    asks.start_soon(ask, peer)
            outer.cancel_scope.cancel()

    def _book_peers(self) -> list[PeerRef]:
        """Peers to ask for their offer book, best first."""
        raise NotImplementedError

    async def _find_in_dht(self, model: str, limit: int, timeout: float) -> list[Offer]:
        """Offers of ``model`` found through the DHT within ``timeout`` (validated)."""
        raise NotImplementedError

    def protect(self, peer: str) -> None:
        """Serve ``peer``'s streams from the reserved room, without per-peer caps (a
        funded job runs for it); one :meth:`unprotect` per call."""
        self._admission.protect(peer)

    def unprotect(self, peer: str) -> None:
        self._admission.unprotect(peer)

    def circuit_limit(self, peer: str) -> CircuitLimit | None:
        """No relay circuits here (libp2p's network overrides this)."""
        return None

    def _check_open(self) -> None:
        raise NotImplementedError

    async def _open_framed(self, ref: PeerRef, protocol: str, timeout: float) -> FramedStream:
        """A framed stream speaking ``protocol`` to ``ref`` (within ``timeout``)."""
        raise NotImplementedError

    def subscribe_offers(self) -> Subscription:
        self._check_open()
        return self._fanout.subscribe()

    @asynccontextmanager
    async def open_stream(
        self, peer: PeerRef | str, protocol: str, *, timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    ) -> AsyncIterator[MessageStream]:
        stream = await self._open_framed(PeerRef.of(peer), protocol, timeout)
        async with stream:
            yield stream

    async def request(
        self,
        peer: PeerRef | str,
        protocol: str,
        message: Message,
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> AnyMessage:
        return await exchange(self.open_stream, peer, protocol, message, timeout)


async def exchange(
    open_stream: OpenStream,
    peer: PeerRef | str,
    protocol: str,
    message: Message,
    timeout: float,
) -> AnyMessage:
    """One request and its answer on a fresh stream (``Network.request`` of both networks)."""
    with trio.move_on_after(timeout):
        async with open_stream(peer, protocol, timeout=timeout) as stream:
            await stream.send(message)
            return await stream.receive(timeout=timeout)
    raise NetTimeout(f"request {protocol} to {PeerRef.of(peer).peer_id}", timeout)
