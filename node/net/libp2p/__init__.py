"""The libp2p implementation of :class:`dgpu.node.net.interface.Network` (py-libp2p 0.8.1).

Importing this package imports py-libp2p (about a second).
"""

from dgpu.node.net.libp2p.config import GossipConfig, Libp2pConfig, RelayService
from dgpu.node.net.libp2p.network import Libp2pNetwork, open_libp2p_network
from dgpu.node.net.libp2p.quiet import quiet_libp2p_logs
from dgpu.node.net.libp2p.validator import OfferRecordValidator

__all__ = [
    "GossipConfig",
    "Libp2pConfig",
    "Libp2pNetwork",
    "OfferRecordValidator",
    "RelayService",
    "open_libp2p_network",
    "quiet_libp2p_logs",
]
