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
        ├── SettlementError
        └── CoordinatorClientError
"""

from typing import TYPE_CHECKING, Any

from dgpu.coordinator.auth import (
    HEADER_ADDRESS,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    sign_request,
    verify_request,
)
from dgpu.coordinator.client import CoordinatorClient, IndexedOffer, OfferSearch
from dgpu.coordinator.config import CoordinatorConfig, RateLimit
from dgpu.coordinator.errors import (
    ApiError,
    CoordinatorClientError,
    CoordinatorError,
    SettlementError,
    StoreError,
)

if TYPE_CHECKING:
    from dgpu.coordinator.app import create_app


def __getattr__(name: str) -> Any:
    # The app (starlette, jinja, the store) loads on first use: nodes importing the client
    # do not pay for it.
    if name == "create_app":
        from dgpu.coordinator.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HEADER_ADDRESS",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "ApiError",
    "CoordinatorClient",
    "CoordinatorClientError",
    "CoordinatorConfig",
    "CoordinatorError",
    "IndexedOffer",
    "OfferSearch",
    "RateLimit",
    "SettlementError",
    "StoreError",
    "create_app",
    "sign_request",
    "verify_request",
]
