"""MemoryNetwork: the :class:`~dgpu.node.net.interface.Network` of one peer on a hub."""

# The interface takes explicit per-call timeouts (every read has a deadline by design).
# ruff: noqa: ASYNC109

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
from dgpu.node.net.admission import AdmissionConfig, StreamAdmission
from dgpu.node.net.errors import (
    NetTimeout,
    NetworkClosed,
    PeerUnreachable,
    ProtocolNotSupported,
)
from dgpu.node.net.framing import (
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_WRITE_TIMEOUT_S,
    ByteStream,
    FramedStream,
)
from dgpu.node.net.interface import (
    DEFAULT_FIND_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    OFFER_BOOK_PROTOCOL,
    OFFER_PROTOCOL,
    Handler,
    PeerRef,
)
from dgpu.node.net.memory.hub import MemoryHub
from dgpu.node.net.offer_book import OfferBook, OfferBookConfig
from dgpu.node.net.records import (
    check_own_offer,
    newest_per_provider,
    offer_key,
    provider_key,
)
from dgpu.node.net.serving import OfferFanout, StreamClient, run_guarded
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import MAX_MESSAGE_BYTES, Offer
from dgpu.protocol.offers import offer_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryNetworkConfig:
    max_frame: int = MAX_MESSAGE_BYTES
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    subscription_buffer: int = 256
    offer_book: OfferBookConfig = field(default_factory=OfferBookConfig)
    ip: str = ""
    """The address this peer's streams come from, as its listeners see it ("": unknown, as
    for a relayed libp2p peer); tests of per-address limits give peers one."""


class MemoryNetwork(StreamClient):
    """One peer on a :class:`MemoryHub`; open with :func:`open_memory_network`."""

    def __init__(
        self,
        hub: MemoryHub,
        identity: Identity,
        config: MemoryNetworkConfig,
        nursery: trio.Nursery,
    ) -> None:
        self._hub = hub
        self._identity = identity
        self._config = config
        self._nursery = nursery
        self._handlers: dict[str, Handler] = {}
        self._admission = StreamAdmission(config.admission)
        self._fanout = OfferFanout(config.subscription_buffer, self.now)
        self._book = OfferBook(config.offer_book)
        self._peer_id = identity.peer_id
        self._public_key = identity.public_key
        self.closed = False
        self.crashed = False
        self._advertised: Offer | None = None
        self.serve(OFFER_PROTOCOL, self._serve_offer)
        if config.offer_book.enabled:
            self.serve(OFFER_BOOK_PROTOCOL, self._serve_book)

    # -- Network ---------------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return [f"/memory/p2p/{self._peer_id}"]

    def now(self) -> int:
        return self._hub.now()

    async def advertise(self, offer: Offer, *, timeout: float = DEFAULT_FIND_TIMEOUT_S) -> None:
        self._check_open()
        check_own_offer(offer, self._identity, now=self.now())
        data = offer_bytes(offer)
        self._advertised = offer
        self._remember_offer(offer)
        with trio.move_on_after(timeout) as scope:
            await self._round_trip()
            self._hub.store_provider(self._peer_id, provider_key(offer.gpu_model))
            self._hub.store_value(self._peer_id, offer_key(self._peer_id), data)
        if scope.cancelled_caught:
            log.info("advertise of %s timed out after %gs", offer.gpu_model, timeout)
        self._hub.gossip(self._peer_id, data)

    async def _find_in_dht(self, model: str, limit: int, timeout: float) -> list[Offer]:
        self._check_open()
        found: list[Offer] = []
        with trio.move_on_after(timeout):
            await self._round_trip()
            providers = self._hub.find_providers(self._peer_id, provider_key(model), limit)
            await self._round_trip()
            now = self.now()
            for peer in providers:
                key = offer_key(peer)
                for value in self._hub.get_values(self._peer_id, key):
                    offer = self._hub.offer_record(key, value, now)
                    if offer is None:
                        log.debug("refused a DHT record under %s", key)
                    elif offer.gpu_model == model:
                        found.append(offer)
        return newest_per_provider(found)[:limit]

    def serve(self, protocol: str, handler: Handler) -> None:
        self._check_open()
        self._handlers[protocol] = handler

    # -- hub side ---------------------------------------------------------------------
    @property
    def wants_gossip(self) -> bool:
        return self._fanout.subscribed or self._book.config.enabled

    def deliver_gossip(self, offer: Offer) -> None:
        if offer.provider != self._public_key:
            self._remember_offer(offer)
            self._fanout.publish_nowait(offer)

    def _book_peers(self) -> list[PeerRef]:
        """The hub's oldest peer first (as a libp2p node asks its bootstrap peers: they
        have heard most), then the others in random order (the hub's seeded generator)."""
        others = [p for p in self._hub.peers if p != self._peer_id]
        if not others:
            return []
        rest = others[1:]
        count = min(len(rest), self._book.config.peers_asked - 1)
        return [PeerRef(p) for p in [others[0], *self._hub.rng.sample(rest, count)]]

    def accept(self, stream: FramedStream, protocol: str) -> bool:
        handler = self._handlers.get(protocol)
        if handler is None or self.closed:
            return False
        self._nursery.start_soon(run_guarded, handler, stream, self._admission)
        return True

    def crash(self) -> None:
        self.crashed = True
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._hub.leave(self._peer_id)
        self._fanout.close()
        self._nursery.cancel_scope.cancel()

    # -- internals --------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise NetworkClosed(f"network of {self._peer_id} is closed")

    async def _round_trip(self) -> None:
        await trio.sleep(2 * self._hub.faults.latency_s)

    async def _open_framed(self, ref: PeerRef, protocol: str, timeout: float) -> FramedStream:
        peer_id = ref.peer_id
        self._check_open()
        self._hub.stats.dials += 1
        with trio.move_on_after(timeout) as scope:
            await self._round_trip()
        if scope.cancelled_caught:
            raise NetTimeout(f"dial {peer_id}", timeout)
        self._check_open()
        target = self._hub.network(peer_id)
        if target is None or not self._hub.reachable(self._peer_id, peer_id) or self._hub.lost():
            self._hub.stats.dials_failed += 1
            raise PeerUnreachable(peer_id, "no route (down, partitioned or dial lost)")
        conn = self._hub.connect(self._peer_id, peer_id)
        local, remote = conn.ends
        cfg, tcfg = self._config, target._config
        inbound = FramedStream(
            remote,
            remote_peer=self._peer_id,
            protocol=protocol,
            remote_ip=cfg.ip,
            max_frame=tcfg.max_frame,
            read_timeout=tcfg.read_timeout_s,
            write_timeout=tcfg.write_timeout_s,
        )
        if not target.accept(inbound, protocol):
            conn.break_()
            raise ProtocolNotSupported(peer_id, protocol)
        return FramedStream(
            local,
            remote_peer=peer_id,
            protocol=protocol,
            max_frame=cfg.max_frame,
            read_timeout=cfg.read_timeout_s,
            write_timeout=cfg.write_timeout_s,
        )

    async def open_raw_stream(self, peer_id: str, protocol: str) -> ByteStream:
        """The bare byte stream of a new stream to ``peer_id`` (for tests of hostile peers
        that send arbitrary bytes); not part of :class:`Network`."""
        framed = await self._open_framed(PeerRef(peer_id), protocol, DEFAULT_REQUEST_TIMEOUT_S)
        return framed._stream


@asynccontextmanager
async def open_memory_network(
    hub: MemoryHub, identity: Identity, config: MemoryNetworkConfig | None = None
) -> AsyncIterator[MemoryNetwork]:
    """Join ``hub`` as ``identity``; leave on exit. If the peer is crashed
    (:meth:`MemoryHub.crash`) the body of this block is cancelled and the block ends
    quietly; ``net.crashed`` tells which."""
    async with trio.open_nursery() as nursery:
        net = MemoryNetwork(hub, identity, config or MemoryNetworkConfig(), nursery)
        hub.join(net)
        try:
            yield net
        finally:
            net.close()
