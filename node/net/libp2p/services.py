"""Starting and stopping the py-libp2p machinery behind :class:`Libp2pNetwork`."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import base58
import multiaddr
import trio
from dgpu.node.net.admission import StreamAdmission
from dgpu.node.net.interface import CircuitLimit
from dgpu.node.net.libp2p.addresses import AddressBook
from dgpu.node.net.libp2p.config import Libp2pConfig, RelayService
from dgpu.node.net.libp2p.connections import ConnectionPolicy, install_connection_policy
from dgpu.node.net.libp2p.guard import StrikeBook, guard_stream_handlers
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS, build_host, listen_multiaddrs
from dgpu.node.net.libp2p.punch import HolePuncher
from dgpu.node.net.libp2p.quiet import quiet_libp2p_logs
from dgpu.node.net.libp2p.relay import (
    check_reachability,
    limit_circuits_per_peer,
    limit_reservations_per_ip,
    remember_circuit_limits,
    reserve_on,
    serve_dialback,
)
from dgpu.node.net.libp2p.validator import OfferRecordValidator
from dgpu.node.net.records import NAMESPACE
from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.identity import Identity, peer_id_of
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import parse_offer
from libp2p.abc import IHost, ISubscriptionAPI
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

log = logging.getLogger(__name__)

MESH_WAIT_S = 120.0
"""How long an offer published before the gossip mesh formed waits for it (past the
bootstrap re-dial interval, below a 300 s offer's re-advertise)."""


class Libp2pServices:
    """The host, DHT and pubsub of one node, and the offers-topic plumbing."""

    def __init__(
        self,
        config: Libp2pConfig,
        host: IHost,
        dht: KadDHT,
        pubsub: Pubsub,
        strikes: StrikeBook | None = None,
        admission: StreamAdmission | None = None,
        connections: ConnectionPolicy | None = None,
    ):
        self.config = config
        self.host = host
        self.strikes = strikes or StrikeBook()
        self.admission = admission or StreamAdmission(config.admission)
        self.connections = connections
        self.dht = dht
        self.pubsub = pubsub
        self.on_gossip_offer: Callable[[Offer], None] = lambda offer: None
        self.addresses = AddressBook()
        self.relay_transport: CircuitV2Transport | None = None
        self.puncher: HolePuncher | None = None
        self.circuit_limits: dict[ID, CircuitLimit] = {}
        """Limits of circuits others opened to us, by source (relay.remember_circuit_limits)."""
        """DCUtR hole punching (every node but relays)."""
        self.gossip_refused = 0
        self.router: GossipSub | None = None
        self.nursery: trio.Nursery | None = None
        """The services' own tasks (set while they run)."""
        self.bootstrap_peers: list[tuple[str, ID]] = []
        """The configured bootstrap peers whose address parses: (address, peer ID)."""
        for text in config.bootstrap:
            try:
                peer_id = info_from_p2p_addr(multiaddr.Multiaddr(text)).peer_id
            except (ValueError, multiaddr.exceptions.Error):
                continue
            self.bootstrap_peers.append((text, peer_id))

    def gossip_offer(self, message: rpc_pb2.Message) -> Offer:
        """The offer in a gossip message; it must be published by its own provider."""
        offer = parse_offer(message.data, now=int(time.time()))
        if base58.b58decode(peer_id_of(offer.provider)) != message.from_id:
            raise ProtocolError("offer gossiped by another peer than its provider")
        return offer

    def validate_gossip(self, forwarder: ID, message: rpc_pb2.Message) -> bool:
        """Gossipsub topic validator: invalid offers are neither delivered nor relayed."""
        try:
            self.gossip_offer(message)
        except ProtocolError as exc:
            self.gossip_refused += 1
            log.debug("refused gossip from %s: %s", forwarder, exc)
            return False
        return True

    async def publish_offer(self, data: bytes) -> None:
        """Gossip an offer. Until the topic's mesh has a peer (it forms at the heartbeats
        after a connection) py-libp2p sends a publication to nobody: a node that has just
        started publishes it once the mesh has one, in the background (for at most
        :data:`MESH_WAIT_S`), so the bootstrap peers' offer books hear it."""
        if self.nursery is None or self._mesh_size():
            await self._publish(data)
        else:
            self.nursery.start_soon(self._publish_when_meshed, data)

    def _mesh_size(self) -> int:
        return len(self.router.mesh.get(self.config.offers_topic, ())) if self.router else 0

    async def _publish_when_meshed(self, data: bytes) -> None:
        with trio.move_on_after(MESH_WAIT_S):
            # the mesh is the library's state, with no event to wait on: poll it
            while not self._mesh_size():  # noqa: ASYNC110
                await trio.sleep(self.config.gossip.heartbeat_interval_s / 4)
        await self._publish(data)

    async def _publish(self, data: bytes) -> None:
        with trio.move_on_after(self.config.write_timeout_s):
            try:
                await self.pubsub.publish(self.config.offers_topic, data)
            except LIBP2P_IO_ERRORS:
                log.info("gossiping an offer failed", exc_info=True)

    async def read_gossip(self, subscription: ISubscriptionAPI) -> None:
        while True:
            message = await subscription.get()
            try:
                offer = self.gossip_offer(message)
            except ProtocolError:
                log.debug("dropped an offer that expired in transit", exc_info=True)
                continue
            self.on_gossip_offer(offer)

    async def join(self) -> None:
        """Dial the bootstrap peers, add them to the DHT and fill the routing table."""
        for text in self.config.bootstrap:
            try:
                info = info_from_p2p_addr(multiaddr.Multiaddr(text))
            except (ValueError, multiaddr.exceptions.Error):
                log.warning("ignoring bad bootstrap address %s", text, exc_info=True)
                continue
            if info.peer_id == self.host.get_id():
                continue
            with trio.move_on_after(self.config.dial_timeout_s) as scope:
                try:
                    await self.host.connect(info)
                    await self.dht.add_peer(info.peer_id)
                except LIBP2P_IO_ERRORS as exc:  # the reason in words; the traceback at -vv
                    log.warning("bootstrap peer %s unreachable: %s", text, exc)
                    log.debug("dialling bootstrap peer %s failed", text, exc_info=True)
            if scope.cancelled_caught:
                log.warning("bootstrap peer %s: dial timed out", text)
        if self.dht.get_routing_table_size():
            with trio.move_on_after(self.config.dial_timeout_s):
                try:
                    await self.dht.refresh_routing_table()
                except LIBP2P_IO_ERRORS:
                    log.info("routing table refresh failed", exc_info=True)

    async def disconnect_all(self) -> None:
        """First step of shutdown: stop taking pubsub streams and close every connection
        while pubsub and the DHT still run. Stopped in the other order, py-libp2p's pubsub
        reader gets a message after its service stopped and raises out of the swarm."""
        for protocol in self.pubsub.protocols:
            self.host.remove_stream_handler(protocol)
        with trio.move_on_after(self.config.dial_timeout_s):
            async with trio.open_nursery() as nursery:
                for peer in self.host.get_connected_peers():
                    nursery.start_soon(self._disconnect, peer)

    async def _disconnect(self, peer: ID) -> None:
        try:
            await self.host.disconnect(peer)
        except LIBP2P_IO_ERRORS:
            log.debug("closing the connection to %s failed", peer, exc_info=True)

    async def become_reachable(self, nursery: trio.Nursery) -> None:
        """Dial-back from the bootstrap peers; when not reachable, relay slots on them."""
        addrs = [text for text, _ in self.bootstrap_peers]
        ids = [peer_id for _, peer_id in self.bootstrap_peers]
        reachable = await check_reachability(self.host, ids, self.addresses)
        if reachable:
            return
        assert self.relay_transport is not None
        if not await reserve_on(self.host, self.relay_transport, addrs, self.addresses, nursery):
            log.warning("not reachable from outside and no relay slot: nobody can dial us")

    async def keep_joined(self) -> None:
        while True:
            await trio.sleep(self.config.rebootstrap_interval_s)
            if self.config.bootstrap and not self.dht.get_routing_table_size():
                log.info("routing table empty; dialling the bootstrap peers again")
                await self.join()


@asynccontextmanager
async def start_services(identity: Identity, config: Libp2pConfig) -> AsyncIterator[Libp2pServices]:
    if config.quiet_libp2p_logs:
        quiet_libp2p_logs()
    addresses = AddressBook()
    host = build_host(identity, config, addresses)
    # before anything registers a handler: every one, the library's included, is guarded
    strikes = guard_stream_handlers(host)
    admission = StreamAdmission(config.admission)
    connections = ConnectionPolicy(config.connections, admission.is_protected)
    install_connection_policy(host, connections)
    dht = KadDHT(host, DHTMode.SERVER, strict_validation=True)
    dht.register_validator(NAMESPACE, OfferRecordValidator())
    # private attribute: py-libp2p resets inbound DHT streams beyond 12 at once
    dht._inbound_limiter = trio.CapacityLimiter(config.dht_inbound_limit)
    g = config.gossip
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=g.degree,
        degree_low=g.degree_low,
        degree_high=g.degree_high,
        time_to_live=g.time_to_live_s,
        heartbeat_interval=g.heartbeat_interval_s,
        max_messages_per_topic_per_second=g.max_messages_per_topic_per_second,
    )
    pubsub = Pubsub(host, router, seen_ttl=g.seen_ttl_s)
    services = Libp2pServices(config, host, dht, pubsub, strikes, admission, connections)
    services.router = router
    services.addresses = addresses
    pubsub.set_topic_validator(config.offers_topic, services.validate_gossip, False)
    # every node accepts relayed connections (STOP); bootstrap peers also relay (HOP);
    # only nodes that may need to be reached through a relay reserve (CLIENT: hazard 19)
    relay = config.relay_service
    circuit = CircuitV2Protocol(
        host, limits=_relay_limits(relay) if relay else None, allow_hop=relay is not None
    )
    roles = RelayRole.STOP | RelayRole.CLIENT if config.reserve_when_unreachable else RelayRole.STOP
    services.relay_transport = CircuitV2Transport(host, circuit, RelayConfig(roles=roles))
    services.circuit_limits = remember_circuit_limits(circuit)
    if relay is not None:
        serve_dialback(host)
        limit_reservations_per_ip(host, circuit, relay.reservations_per_ip)
        limit_circuits_per_peer(host, circuit, relay.circuits_per_peer, relay.circuits_per_source)
    else:
        services.puncher = HolePuncher(host, addresses)
    async with (
        host.run(listen_addrs=listen_multiaddrs(config)),
        background_trio_service(dht),
        background_trio_service(pubsub),
        background_trio_service(router),
        background_trio_service(circuit),
        contextlib.AsyncExitStack() as stack,
    ):
        if services.puncher is not None:
            await stack.enter_async_context(background_trio_service(services.puncher.dcutr))
        await pubsub.wait_until_ready()
        subscription = await pubsub.subscribe(config.offers_topic)
        async with trio.open_nursery() as nursery:
            services.nursery = nursery
            if services.puncher is not None:
                await nursery.start(services.puncher.run)
            nursery.start_soon(services.read_gossip, subscription)
            await services.join()
            if config.reserve_when_unreachable:
                await services.become_reachable(nursery)
            nursery.start_soon(services.keep_joined)
            try:
                yield services
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await services.disconnect_all()


def _relay_limits(relay: RelayService) -> RelayLimits:
    return RelayLimits(
        duration=relay.circuit_seconds,
        data=relay.circuit_bytes,
        max_circuit_conns=relay.circuits_per_peer,
        max_reservations=relay.max_reservations,
        reservation_ttl=relay.reservation_ttl_s,
    )
