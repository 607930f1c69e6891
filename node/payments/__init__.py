"""Payments as the node's roles see them: the escrow interface and its implementations.

* :class:`Escrow` — read a channel, open one, settle receipts, reclaim (see :mod:`.escrow`);
* :class:`MemoryEscrow` over a :class:`MemoryLedger` — the program's rules in memory, proven
  equal to the program in LiteSVM (fast tests, large simulations);
* ``ChainEscrow`` (:mod:`.chain`) — the real program through ``dgpu.contracts_client``.
"""

from dgpu.node.payments.escrow import (
    ChannelNotFound,
    ChannelRefused,
    ChannelState,
    Escrow,
    OpenedChannel,
    PaymentError,
    Refunded,
    Settled,
    SettlementFailed,
)
from dgpu.node.payments.memory import MemoryEscrow, MemoryLedger

__all__ = [
    "ChannelNotFound",
    "ChannelRefused",
    "ChannelState",
    "Escrow",
    "MemoryEscrow",
    "MemoryLedger",
    "OpenedChannel",
    "PaymentError",
    "Refunded",
    "Settled",
    "SettlementFailed",
]
