"""Configuration of the libp2p network (frozen data; read from flags/TOML at the edge)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dgpu.node.net.admission import AdmissionConfig
from dgpu.node.net.framing import DEFAULT_READ_TIMEOUT_S, DEFAULT_WRITE_TIMEOUT_S
from dgpu.node.net.interface import OFFERS_TOPIC
from dgpu.node.net.offer_book import OfferBookConfig
from dgpu.protocol.messages import MAX_MESSAGE_BYTES

PSK_BYTES = 32


@dataclass(frozen=True)
class GossipConfig:
    """Gossipsub settings, all explicit: py-libp2p's defaults (120 s heartbeat, 10 msg/s
    per peer per topic silently dropped, own publishes included) do not suit us."""

    heartbeat_interval_s: int = 1
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    max_messages_per_topic_per_second: float = 50.0
    time_to_live_s: int = 60
    seen_ttl_s: int = 120


@dataclass(frozen=True)
class ConnectionLimits:
    """Inbound connection limits (see :mod:`dgpu.node.net.libp2p.connections`)."""

    max_inbound: int = 200
    """Inbound connections at once (the library's own cap is 250)."""
    reserved: int = 20
    """Of ``max_inbound``, kept for protected peers."""
    max_per_ip: int = 32
    """Inbound connections from one IP address at once."""

    def __post_init__(self) -> None:
        if not 0 <= self.reserved < self.max_inbound:
            raise ValueError("reserved must be below max_inbound")


@dataclass(frozen=True)
class RelayService:
    """Circuit relay v2 served to others (bootstrap peers). py-libp2p enforces the first
    four; the rest is ours (LIBP2P.md hazard 23)."""

    max_reservations: int = 128
    """Reservations held at once, in all."""
    circuits_per_peer: int = 8
    """Concurrent circuits to one reserved peer."""
    circuits_per_source: int = 2
    """Of those, held by one source peer, and by all peers from one IP together (ours:
    one source cannot take all of a provider's circuits)."""
    circuit_bytes: int = 256 * 1024 * 1024
    """Bytes one circuit may carry (both directions together), then it is closed."""
    circuit_seconds: int = 3600
    """Lifetime of one circuit."""
    reservation_ttl_s: int = 900
    """Short, so that reservations of peers that went away free their slots soon."""
    reservations_per_ip: int = 4
    """Reservations held at once by peers connecting from one IP address (ours)."""


@dataclass(frozen=True)
class Libp2pConfig:
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    """Multiaddrs to listen on (TCP)."""
    bootstrap: tuple[str, ...] = ()
    """Full multiaddrs (``.../p2p/<peer id>``) of peers to join the DHT through."""
    psk: bytes | None = None
    """32-byte private-network key: only peers with the same key can connect."""
    gossip: GossipConfig = field(default_factory=GossipConfig)
    offers_topic: str = OFFERS_TOPIC
    dht_inbound_limit: int = 64
    """Concurrent inbound DHT requests served (py-libp2p resets above its default 12)."""
    dial_timeout_s: float = 10.0
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    max_frame: int = MAX_MESSAGE_BYTES
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    """Inbound dgpu streams: caps and rates per peer, room kept for funded jobs."""
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    """Inbound connections: per IP and in all, room kept for funded jobs."""
    subscription_buffer: int = 256
    offer_book: OfferBookConfig = field(default_factory=OfferBookConfig)
    """Offers heard by gossip, served to and asked of peers (``find_offers``)."""
    find_concurrency: int = 8
    """Offers fetched in parallel by a DHT search."""
    offer_request_timeout_s: float = 3.0
    """How long a DHT search waits for a provider's own answer before reading its offer
    from the DHT instead."""
    rebootstrap_interval_s: float = 30.0
    """How often to re-dial the bootstrap peers while the routing table is empty."""
    relay_service: RelayService | None = None
    """Serve circuit relay v2 (and dial-backs) to others: bootstrap peers."""
    reserve_when_unreachable: bool = False
    """Check reachability by dial-back from the bootstrap peers and, when not reachable,
    reserve relay slots on them and announce circuit addresses (providers)."""
    quiet_libp2p_logs: bool = True
    """Silence py-libp2p's known shutdown-race and overload log noise (LIBP2P.md hazard
    12); real errors of our own code are never filtered."""

    def __post_init__(self) -> None:
        if self.psk is not None and len(self.psk) != PSK_BYTES:
            raise ValueError(f"private-network key must be {PSK_BYTES} bytes")
