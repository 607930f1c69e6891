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
