"""dgpu.coordinator: the thin coordinator — offer index and search, reference prices, receipt
intake and batched settlement, provider scores, web explorer, Prometheus metrics.

It helps; it is never needed for safety: it can only move funds to the provider named in a
channel and never more than the renter signed for (the escrow program enforces both), and
providers may always settle their receipts themselves.

Errors (:mod:`dgpu.coordinator.errors`)::

    DgpuError
    └── CoordinatorError
        ├── ApiError
        ├── StoreError
        └── SettlementError

Its HTTP client is not here: nodes must not depend on the server, so the client lives in
:mod:`dgpu.node.coordinator_client` and request signing in :mod:`dgpu.protocol.http_auth`.
"""

from dgpu.coordinator.app import create_app
from dgpu.coordinator.config import CoordinatorConfig, RateLimit
from dgpu.coordinator.errors import ApiError, CoordinatorError, SettlementError, StoreError

__all__ = [
    "ApiError",
    "CoordinatorConfig",
    "CoordinatorError",
    "RateLimit",
    "SettlementError",
    "StoreError",
    "create_app",
]
