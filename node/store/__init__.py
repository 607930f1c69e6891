"""The node's local store: one sqlite database (WAL, fsync'd commits) per node.

    store = NodeStore.open(data_dir / "node.sqlite")
    store.save_receipt("provider", receipt, now=now)   # durable when it returns
    store.unsettled_receipts()                          # what still has to reach the chain

Errors are drawn in :mod:`dgpu.node.store.errors`.
"""

from dgpu.node.store.db import (
    FINAL_JOB_STATES,
    LIVE_JOB_STATES,
    ChannelRecord,
    ChannelStatus,
    JobRecord,
    NodeStore,
    PeerRecord,
    Role,
    SettlementRecord,
    SettlementStatus,
)
from dgpu.node.store.errors import (
    RecordNotFound,
    SchemaTooNew,
    StoreCorrupt,
    StoreError,
    StoreFull,
    StoreLocked,
    StoreReadOnly,
    StoreUnusable,
)

__all__ = [
    "FINAL_JOB_STATES",
    "LIVE_JOB_STATES",
    "ChannelRecord",
    "ChannelStatus",
    "JobRecord",
    "NodeStore",
    "PeerRecord",
    "RecordNotFound",
    "Role",
    "SchemaTooNew",
    "SettlementRecord",
    "SettlementStatus",
    "StoreCorrupt",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "StoreReadOnly",
    "StoreUnusable",
]
