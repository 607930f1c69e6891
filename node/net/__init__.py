"""dgpu.node.net: the node's networking layer.

One interface, :class:`Network` (offers through the DHT and gossip, framed message
streams, guarded protocol handlers), two implementations:

* :class:`Libp2pNetwork` (``open_libp2p_network``): py-libp2p 0.8.1 over TCP, Noise, Yamux,
  Kademlia DHT in server mode, gossipsub, optional private-network key;
* :class:`MemoryNetwork` (``open_memory_hub`` + ``open_memory_network``): in-memory,
  deterministic, virtual clock, injectable latency, loss, partitions and crashes.

Bulk bytes (job inputs and outputs) travel over :mod:`dgpu.node.net.bulk`, a separate
authorised TCP channel. The libp2p names are imported lazily (``import libp2p`` takes a
second), so simulations that only use the memory network do not pay for it.

Errors: see :mod:`dgpu.node.net.errors`.

Provider side::

    async with open_libp2p_network(identity, Libp2pConfig(bootstrap=(boot_addr,))) as net:
        net.serve(NEGOTIATE_PROTOCOL, negotiate)        # handler(stream, peer_id)
        net.serve(METERING_PROTOCOL, meter)
        make = lambda now: make_offer(identity, terms, multiaddrs=net.listen_addrs,
                                      now=now, ttl_s=300)
        async with trio.open_nursery() as nursery:
            await nursery.start(keep_advertising, net, make)
            ...

    async def negotiate(stream: MessageStream, peer: str) -> None:
        request = await stream.receive_as(JobRequest, timeout=10)
        await stream.send(quote)
        agreement = await stream.receive_as(Agreement, timeout=60)
        ...                                            # return: stream closed; raise: reset

Renter side::

    offers = await net.find_offers("H100", limit=10, timeout=20)   # re-validated, one each
    async with net.open_stream(PeerRef.from_offer(offers[0]), NEGOTIATE_PROTOCOL) as s:
        await s.send(job_request)
        quote = await s.receive_as(Quote, timeout=30)
        ...
    async with net.subscribe_offers() as live:                      # gossip, validated
        async for offer in live:
            ...

The metering exchange (UsageReport -> Receipt) runs on its own long-lived stream
(:data:`METERING_PROTOCOL`) with a ``timeout`` on every ``receive`` (the grace period).
Tests and simulations use the same code with ``open_memory_hub`` + ``open_memory_network``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dgpu.node.net.advertising import keep_advertising
from dgpu.node.net.errors import (
    BulkError,
    BulkLimitExceeded,
    FrameError,
    FrameTooLarge,
    IntegrityError,
    NetError,
    NetTimeout,
    NetworkClosed,
    PeerUnreachable,
    ProtocolNotSupported,
    StreamClosed,
    StreamReset,
    TicketRefused,
)
from dgpu.node.net.framing import ByteStream, FramedStream
from dgpu.node.net.interface import (
    METERING_PROTOCOL,
    NEGOTIATE_PROTOCOL,
    OFFERS_TOPIC,
    Handler,
    MessageStream,
    Network,
    OfferSubscription,
    PeerRef,
)
from dgpu.node.net.memory import (
    Faults,
    MemoryHub,
    MemoryHubConfig,
    MemoryNetwork,
    MemoryNetworkConfig,
    open_memory_hub,
    open_memory_network,
)

if TYPE_CHECKING:
    from dgpu.node.net.libp2p import (
        GossipConfig,
        Libp2pConfig,
        Libp2pNetwork,
        open_libp2p_network,
    )

_LAZY = {"GossipConfig", "Libp2pConfig", "Libp2pNetwork", "open_libp2p_network"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from dgpu.node.net import libp2p

        return getattr(libp2p, name)
    raise AttributeError(name)


__all__ = [
    "METERING_PROTOCOL",
    "NEGOTIATE_PROTOCOL",
    "OFFERS_TOPIC",
    "BulkError",
    "BulkLimitExceeded",
    "ByteStream",
    "Faults",
    "FrameError",
    "FrameTooLarge",
    "FramedStream",
    "GossipConfig",
    "Handler",
    "IntegrityError",
    "Libp2pConfig",
    "Libp2pNetwork",
    "MemoryHub",
    "MemoryHubConfig",
    "MemoryNetwork",
    "MemoryNetworkConfig",
    "MessageStream",
    "NetError",
    "NetTimeout",
    "Network",
    "NetworkClosed",
    "OfferSubscription",
    "PeerRef",
    "PeerUnreachable",
    "ProtocolNotSupported",
    "StreamClosed",
    "StreamReset",
    "TicketRefused",
    "keep_advertising",
    "open_libp2p_network",
    "open_memory_hub",
    "open_memory_network",
]
