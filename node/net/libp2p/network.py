"""Libp2pNetwork: the :class:`~dgpu.node.net.interface.Network` over py-libp2p 0.8.1.

Task tree (every task owned by ``open_libp2p_network``)::

    host.run(listen)                      swarm, listeners, inbound stream handlers
    ├── background_trio_service(dht)      Kademlia, SERVER mode, dgpu validator
    ├── background_trio_service(pubsub)   + gossipsub router
    └── nursery: gossip reader, bootstrap maintenance, the caller's block
"""

# Explicit per-call timeouts are part of the interface.
# ruff: noqa: ASYNC109

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import multiaddr
import trio
from dgpu.node.net.errors import (
    NetError,
    NetTimeout,
    NetworkClosed,
    PeerUnreachable,
    ProtocolNotSupported,
    StreamReset,
)
from dgpu.node.net.framing import ByteStream, FramedStream
from dgpu.node.net.interface import (
    DEFAULT_FIND_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    OFFER_BOOK_PROTOCOL,
    OFFER_PROTOCOL,
    CircuitLimit,
    Handler,
    PeerRef,
)
from dgpu.node.net.libp2p.config import Libp2pConfig
from dgpu.node.net.libp2p.connections import remote_ip_of_stream
from dgpu.node.net.libp2p.dht import find_providers_fresh, get_value_fresh
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS, Libp2pByteStream
from dgpu.node.net.libp2p.punch import direct_connections, remote_addr
from dgpu.node.net.libp2p.relay import dial_circuit, is_circuit
from dgpu.node.net.libp2p.services import Libp2pServices, start_services
from dgpu.node.net.offer_book import OfferBook
from dgpu.node.net.records import (
    check_offer_record,
    check_own_offer,
    newest_per_provider,
    offer_key,
    provider_key,
)
from dgpu.node.net.serving import OfferFanout, StreamClient, run_guarded
from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import offer_bytes
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.protocol_muxer.exceptions import (
    MultiselectClientError,
    ProtocolNotSupportedError,
)

log = logging.getLogger(__name__)

_ADDR_TTL_S = 600


class Libp2pNetwork(StreamClient):
    """A running libp2p node; open it with :func:`open_libp2p_network`."""

    def __init__(self, identity: Identity, config: Libp2pConfig, services: Libp2pServices) -> None:
        self._identity = identity
        self._config = config
        self._services = services
        self._host = services.host
        self._dht = services.dht
        self._admission = services.admission
        self._fanout = OfferFanout(config.subscription_buffer, self.now)
        self._book = OfferBook(config.offer_book)
        self._peer_id = identity.peer_id
        self._public_key = identity.public_key
        self._advertised: Offer | None = None
        self.closed = False
        services.on_gossip_offer = self._on_gossip_offer
        self.serve(OFFER_PROTOCOL, self._serve_offer)
        if config.offer_book.enabled:
            self.serve(OFFER_BOOK_PROTOCOL, self._serve_book)

    # -- Network ---------------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return [str(addr) for addr in self._host.get_addrs()]

    def now(self) -> int:
        return int(time.time())

    @property
    def routing_table_size(self) -> int:
        return self._dht.get_routing_table_size()

    async def advertise(self, offer: Offer, *, timeout: float = DEFAULT_FIND_TIMEOUT_S) -> None:
        self._check_open()
        check_own_offer(offer, self._identity, now=self.now())
        data = offer_bytes(offer)
        self._advertised = offer
        self._remember_offer(offer)
        with trio.move_on_after(timeout) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._provide, provider_key(offer.gpu_model))
                nursery.start_soon(self._put_offer, offer_key(self._peer_id), data)
        if scope.cancelled_caught:
            log.info("DHT advertise of %s timed out after %gs", offer.gpu_model, timeout)
        await self._services.publish_offer(data)

    async def _find_in_dht(self, model: str, limit: int, timeout: float) -> list[Offer]:
        """Providers come from the DHT (py-libp2p keeps at most 20 providers per key on
        each node, so at most about 20 offers per model are found); each provider is asked
        for its offer directly, the DHT value is the fallback."""
        self._check_open()
        found: list[Offer] = []
        with trio.move_on_after(timeout) as scope:
            providers = await find_providers_fresh(self._dht, provider_key(model), limit)
            limiter = trio.CapacityLimiter(self._config.find_concurrency)
            async with trio.open_nursery() as nursery:
                for info in providers:
                    self._remember_addrs(info)
                    nursery.start_soon(self._fetch_offer, info, model, found, limiter)
        if scope.cancelled_caught:
            log.info("find_offers(%s) stopped at its %gs timeout", model, timeout)
        return newest_per_provider(found)[:limit]

    def serve(self, protocol: str, handler: Handler) -> None:
        self._check_open()

        async def on_stream(stream: INetStream) -> None:
            # py-libp2p runs this in its swarm's nursery: nothing may escape from here.
            try:
                peer = stream.muxed_conn.peer_id.to_base58()
                framed = self._framed(Libp2pByteStream(stream), peer, protocol)
                framed.remote_ip = remote_ip_of_stream(stream)
                await run_guarded(handler, framed, self._admission)
            except Exception:
                log.exception("inbound %s stream failed before its handler", protocol)
                await Libp2pByteStream(stream).reset()

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    # -- extras (not part of Network) -----------------------------------------------------
    def serve_raw(
        self, protocol: str, handler: Callable[[ByteStream, str], Awaitable[None]]
    ) -> None:
        """Hand whole inbound byte streams of ``protocol`` to ``handler(stream, peer)``
        (bulk bytes: no frames). Admission applies as to framed streams; the handler
        owns the stream (closes it); anything it raises resets it and is logged."""
        self._check_open()

        async def on_stream(stream: INetStream) -> None:
            raw = Libp2pByteStream(stream)
            try:
                peer = stream.muxed_conn.peer_id.to_base58()
            except Exception:
                log.exception("inbound %s stream without a peer", protocol)
                await raw.reset()
                return
            refused = self._admission.try_admit(peer)
            if refused is not None:
                log.debug("resetting %s stream from %s: over the %s limit", protocol, peer, refused)
                await raw.reset()
                return
            try:
                await handler(raw, peer)
            except NetError:
                log.info("%s stream from %s failed", protocol, peer, exc_info=True)
                await raw.reset()
            except Exception:  # handler boundary: a bug must not kill the node
                log.exception("handler for %s from %s failed", protocol, peer)
                await raw.reset()
            finally:
                self._admission.release(peer)

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    def connection_kind(self, peer: str) -> str:
        """``direct``, ``hole-punched`` (direct, opened by DCUtR from a relayed
        connection), ``relayed`` (only circuits through a relay) or ``none``: how we are
        connected to ``peer`` now."""
        try:
            peer_id = ID.from_base58(peer)
        except ValueError:
            return "none"
        conns = self._host.get_network().get_connections(peer_id)
        if not conns:
            return "none"
        if not direct_connections(self._host, peer_id):
            return "relayed"
        puncher = self._services.puncher
        return "hole-punched" if puncher is not None and puncher.was_punched(peer_id) else "direct"

    def circuit_limit(self, peer: str) -> CircuitLimit | None:
        try:
            peer_id = ID.from_base58(peer)
        except ValueError:
            return None
        if self.connection_kind(peer) != "relayed":
            return None
        return self._services.circuit_limits.get(peer_id)

    def connection_addr(self, peer: str) -> str | None:
        """The remote address new streams to ``peer`` take now (``/ip4/IP/tcp/PORT`` of
        the socket, or the circuit address through a relay), None when not connected."""
        try:
            peer_id = ID.from_base58(peer)
        except ValueError:
            return None
        conns = self._host.get_network().get_connections(peer_id)
        direct = direct_connections(self._host, peer_id)
        return remote_addr((direct or conns)[0]) if conns else None

    async def open_raw_stream(self, peer: PeerRef | str, protocol: str) -> ByteStream:
        """The bare byte stream of a new stream (bulk bytes: outputs, inputs). A hole
        punch to the peer that is in flight is waited for first (it is bounded), so bulk
        bytes take the direct connection when one can be had."""
        ref = PeerRef.of(peer)
        await self.settle_connection(ref)
        return await self._new_stream(ref, protocol, DEFAULT_REQUEST_TIMEOUT_S)

    async def settle_connection(self, peer: PeerRef | str) -> str:
        """Connect to ``peer`` (direct, else through a relay, which starts a hole punch)
        and wait for a punch in flight to end (bounded by the punch timeout); then
        :meth:`connection_kind`. Raises :class:`PeerUnreachable` when no dial worked."""
        ref = PeerRef.of(peer)
        puncher = self._services.puncher
        with trio.move_on_after(self._config.dial_timeout_s) as scope:
            peer_id = await self._connect(ref)
        if puncher is not None and not scope.cancelled_caught:
            await puncher.settled(peer_id)
        return self.connection_kind(ref.peer_id)

    async def connect(self, peer: PeerRef | str, *, timeout: float | None = None) -> None:
        """Make sure a connection to ``peer`` is open (dials it if needed)."""
        seconds = self._config.dial_timeout_s if timeout is None else timeout
        with trio.move_on_after(seconds):
            await self._connect(PeerRef.of(peer))
            return
        raise NetTimeout(f"dial {PeerRef.of(peer).peer_id}", seconds)

    # -- internals --------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise NetworkClosed(f"network of {self._peer_id} is closed")

    async def _open_framed(self, ref: PeerRef, protocol: str, timeout: float) -> FramedStream:
        raw = await self._new_stream(ref, protocol, timeout)
        return self._framed(raw, ref.peer_id, protocol)

    def _framed(self, raw: ByteStream, peer: str, protocol: str) -> FramedStream:
        cfg = self._config
        return FramedStream(
            raw,
            remote_peer=peer,
            protocol=protocol,
            max_frame=cfg.max_frame,
            read_timeout=cfg.read_timeout_s,
            write_timeout=cfg.write_timeout_s,
        )

    def _on_gossip_offer(self, offer: Offer) -> None:
        if offer.provider != self._public_key:
            self._remember_offer(offer)
            self._fanout.publish_nowait(offer)

    def _book_peers(self) -> list[PeerRef]:
        """Connected bootstrap peers first (they have run longest, so heard most), then
        the other connected peers in random order."""
        connected = set(self._host.get_connected_peers())
        first = [p for _, p in self._services.bootstrap_peers if p in connected]
        others = [p for p in connected if p not in first]
        random.shuffle(others)
        return [PeerRef(p.to_base58()) for p in first + others]

    def _remember_addrs(self, info: PeerInfo) -> None:
        if info.addrs and info.peer_id != self._host.get_id():
            self._host.get_peerstore().add_addrs(info.peer_id, info.addrs, _ADDR_TTL_S)

    async def _provide(self, key: str) -> None:
        try:
            if not await self._dht.provide(key):
                log.info("provider record %s reached no DHT peer", key)
        except LIBP2P_IO_ERRORS:
            log.info("providing %s failed", key, exc_info=True)

    async def _put_offer(self, key: str, value: bytes) -> None:
        try:
            await self._dht.put_value(key, value)
        except ValueError:  # py-libp2p: refused by the validator, or older than ours
            log.warning("DHT refused our offer under %s", key, exc_info=True)
        except LIBP2P_IO_ERRORS:
            log.info("storing %s failed", key, exc_info=True)

    async def _fetch_offer(
        self, info: PeerInfo, model: str, found: list[Offer], limiter: trio.CapacityLimiter
    ) -> None:
        """The provider's offer, asked of the provider itself (one round trip, always its
        newest); from the DHT value when the provider does not answer in time."""
        peer = info.peer_id.to_base58()
        key = offer_key(peer)
        async with limiter:
            value = await self._ask_offer(info)
            if value is None:
                value = await get_value_fresh(self._dht, key, now=self.now(), quorum=1)
        if value is None:
            log.debug("provider %s of %s has no offer in the DHT", peer, model)
            return
        try:
            offer = check_offer_record(key, value, now=self.now())
        except ProtocolError:
            log.info("refused the offer of %s", peer, exc_info=True)
            return
        if offer.gpu_model == model:
            found.append(offer)

    async def _ask_offer(self, info: PeerInfo) -> bytes | None:
        ref = PeerRef(info.peer_id.to_base58(), tuple(str(a) for a in info.addrs))
        timeout = self._config.offer_request_timeout_s
        try:
            with trio.move_on_after(timeout):
                async with self.open_stream(ref, OFFER_PROTOCOL, timeout=timeout) as stream:
                    return offer_bytes(await stream.receive_as(Offer, timeout=timeout))
        except (NetError, ProtocolError) as exc:
            log.debug("provider %s did not give its offer: %s", ref.peer_id, exc)
        return None

    async def _connect(self, ref: PeerRef) -> ID:
        """Direct addresses first; then relay circuits (py-libp2p's ``connect`` drops
        them: hazard 18), one at a time; over a circuit, a hole punch in the background
        (:mod:`~dgpu.node.net.libp2p.punch`)."""
        try:
            peer_id = ID.from_base58(ref.peer_id)
        except ValueError as exc:
            raise PeerUnreachable(ref.peer_id, "not a peer ID") from exc
        addrs = [a for a in (_parse_addr(text, peer_id) for text in ref.addrs) if a is not None]
        host = self._host
        if not addrs and peer_id in host.get_connected_peers():
            return peer_id
        if not addrs:
            addrs = list(host.get_peerstore().addrs(peer_id))
        if not addrs:
            info = await self._dht.find_peer(peer_id)
            if info is None or not info.addrs:
                raise PeerUnreachable(ref.peer_id, "no known address")
            addrs = list(info.addrs)
        direct = [a for a in addrs if not is_circuit(str(a))]
        circuits = [_circuit_to(a, peer_id) for a in addrs if is_circuit(str(a))]
        failure: Exception | None = None
        if direct or peer_id in host.get_connected_peers():
            try:
                await host.connect(PeerInfo(peer_id, direct))
                return peer_id
            except (*LIBP2P_IO_ERRORS, ValueError) as exc:
                failure = exc
        transport = self._services.relay_transport
        for circuit in circuits if transport is not None else []:
            assert transport is not None
            try:
                await dial_circuit(transport, circuit)
            except ConnectionError as exc:
                log.info("circuit %s to %s failed: %s", circuit, ref.peer_id, exc)
                failure = exc
                continue
            log.info("connected to %s through relay %s", ref.peer_id, circuit)
            if self._services.puncher is not None:
                self._services.puncher.start(peer_id, functools.partial(self._redial, circuit))
            return peer_id
        raise PeerUnreachable(ref.peer_id, f"dial failed: {failure}") from failure

    async def _redial(self, circuit: multiaddr.Multiaddr) -> None:
        transport = self._services.relay_transport
        if transport is not None:
            try:
                await dial_circuit(transport, circuit)
            except ConnectionError as exc:
                log.info("redialling %s failed: %s", circuit, exc)

    async def _new_stream(self, ref: PeerRef, protocol: str, timeout: float) -> Libp2pByteStream:
        self._check_open()
        with trio.move_on_after(timeout):
            peer_id = await self._connect(ref)
            try:
                stream = await self._host.new_stream(peer_id, [TProtocol(protocol)])
            except LIBP2P_IO_ERRORS as exc:
                if _not_supported(exc):
                    raise ProtocolNotSupported(ref.peer_id, protocol) from exc
                raise StreamReset(f"opening {protocol} stream to {ref.peer_id} failed") from exc
            return Libp2pByteStream(stream)
        raise NetTimeout(f"open {protocol} stream to {ref.peer_id}", timeout)


def _circuit_to(addr: multiaddr.Multiaddr, peer_id: ID) -> multiaddr.Multiaddr:
    """``<relay>/p2p-circuit/p2p/<peer_id>`` (the suffix is often left out)."""
    text = str(addr)
    if text.endswith("/p2p-circuit"):
        return multiaddr.Multiaddr(f"{text}/p2p/{peer_id.to_base58()}")
    return addr


def _parse_addr(text: str, peer_id: ID) -> multiaddr.Multiaddr | None:
    """A dialable address of ``peer_id`` from an offer (addresses of others are ignored)."""
    try:
        addr = multiaddr.Multiaddr(text)
        if is_circuit(text):
            target = text.split("/p2p-circuit", 1)[1]
            if target not in ("", f"/p2p/{peer_id.to_base58()}"):
                return None
            return _circuit_to(addr, peer_id)
        if "/p2p/" in text:
            info = info_from_p2p_addr(addr)
            return info.addrs[0] if info.peer_id == peer_id and info.addrs else None
    except (ValueError, TypeError, multiaddr.exceptions.Error):
        return None
    return addr


def _not_supported(exc: BaseException) -> bool:
    """Whether a failed ``new_stream`` means "the peer does not serve this protocol":
    py-libp2p wraps that answer into a generic ``MultiselectClientError`` with a message."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ProtocolNotSupportedError):
            return True
        if isinstance(seen, MultiselectClientError) and str(seen).startswith(
            "protocols not supported"
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@asynccontextmanager
async def open_libp2p_network(
    identity: Identity, config: Libp2pConfig | None = None
) -> AsyncIterator[Libp2pNetwork]:
    """Start a libp2p node as ``identity``, join the DHT through ``config.bootstrap`` and
    stop everything on exit."""
    config = config or Libp2pConfig()
    async with start_services(identity, config) as services:
        net = Libp2pNetwork(identity, config, services)
        try:
            yield net
        finally:
            net.closed = True
            net._fanout.close()
