"""The coordinator's persistent state, one repository per concern over one database
(sqlite or PostgreSQL: :mod:`dgpu.coordinator.db`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from dgpu.coordinator.db import Database, open_database
from dgpu.coordinator.store.admission import AdmissionRepo, Due, OfferAdmission
from dgpu.coordinator.store.channels import ChannelKey, ChannelRepo, ReceiptStatus, Unsettled
from dgpu.coordinator.store.offers import IngestStatus, OfferQuery, OfferRepo, offer_json
from dgpu.coordinator.store.providers import PriceRepo, PriceSnapshot, ProviderRepo
from dgpu.coordinator.store.verdicts import VerdictRepo, verdict_json


@dataclass(frozen=True)
class Store:
    db: Database
    offers: OfferRepo
    channels: ChannelRepo
    providers: ProviderRepo
    prices: PriceRepo
    verdicts: VerdictRepo
    admission: AdmissionRepo


@asynccontextmanager
async def open_store(target: str | Path) -> AsyncIterator[Store]:
    """The store in ``target``: a sqlite file path or a ``postgresql://`` URL."""
    async with open_database(target) as db:
        yield Store(
            db,
            OfferRepo(db),
            ChannelRepo(db),
            ProviderRepo(db),
            PriceRepo(db),
            VerdictRepo(db),
            AdmissionRepo(db),
        )


__all__ = [
    "AdmissionRepo",
    "ChannelKey",
    "ChannelRepo",
    "Due",
    "IngestStatus",
    "OfferAdmission",
    "OfferQuery",
    "OfferRepo",
    "PriceRepo",
    "PriceSnapshot",
    "ProviderRepo",
    "ReceiptStatus",
    "Store",
    "Unsettled",
    "VerdictRepo",
    "offer_json",
    "open_store",
    "verdict_json",
]
