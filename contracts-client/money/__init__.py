"""The money seam: one escrow interface, one channel-state type, one settler.

* :class:`Escrow` — read channels, open one, pack and settle receipts, reclaim
  (:mod:`.escrow`); :class:`ChannelState` is the one view of a channel account;
* :class:`ChainEscrow` — the real program through :class:`~dgpu.contracts_client.EscrowClient`
  over any ``Chain``, packing batches with address lookup tables (:mod:`.chain_escrow`);
* :class:`MemoryEscrow` over a :class:`MemoryLedger` — the program's rules in memory, proven
  equal to the program in LiteSVM (fast tests, large simulations; :mod:`.memory`);
* :class:`Settler` — read, check, pack, send, bisect a refused batch, reconcile from the
  chain's marks, over a :class:`SettlementJournal` its user provides (:mod:`.settler`).

Runtime-neutral (anyio): the node's trio, the coordinator's asyncio. Errors::

    DgpuError
    └── PaymentError                 root of dgpu.contracts_client.money
        ├── ChannelNotFound          no channel account at that address
        ├── ChannelRefused           the escrow refused to open or refund a channel
        ├── SettlementFailed         a settle transaction did not land
        │   └── SettlementRefused    refused as it is (``permanent``: by the program)
        └── ChainUnavailable         the chain could not be read or did not confirm
"""

from dgpu.contracts_client.instructions import DEFAULT_BOUNDS, ChannelBounds
from dgpu.contracts_client.money.chain_escrow import ChainEscrow
from dgpu.contracts_client.money.errors import (
    ChainUnavailable,
    ChannelNotFound,
    ChannelRefused,
    PaymentError,
    SettlementFailed,
    SettlementRefused,
)
from dgpu.contracts_client.money.escrow import (
    READ_CHUNK,
    ChannelState,
    Escrow,
    OpenedChannel,
    Refunded,
    Settled,
)
from dgpu.contracts_client.money.memory import MemoryEscrow, MemoryLedger, fee_of
from dgpu.contracts_client.money.settler import (
    BatchItem,
    Claim,
    OpenBatch,
    Opening,
    Outcome,
    RoundReport,
    SetAside,
    SettlementJournal,
    Settler,
)

__all__ = [
    "DEFAULT_BOUNDS",
    "READ_CHUNK",
    "BatchItem",
    "ChainEscrow",
    "ChainUnavailable",
    "ChannelBounds",
    "ChannelNotFound",
    "ChannelRefused",
    "ChannelState",
    "Claim",
    "Escrow",
    "MemoryEscrow",
    "MemoryLedger",
    "OpenBatch",
    "OpenedChannel",
    "Opening",
    "Outcome",
    "PaymentError",
    "Refunded",
    "RoundReport",
    "SetAside",
    "Settled",
    "SettlementFailed",
    "SettlementJournal",
    "SettlementRefused",
    "Settler",
    "fee_of",
]
