"""Relaying gossiped offers into an index (the coordinator's ingest endpoint)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Protocol

import trio
from dgpu.node.coordinator_client import CoordinatorClient
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import offer_bytes

log = logging.getLogger(__name__)


class OfferSink(Protocol):
    """Where a relay hands the valid offers it hears."""

    async def submit(self, offer: Offer) -> None:
        """Deliver one offer; raise :class:`~dgpu.protocol.errors.DgpuError` on refusal."""
        ...


class CoordinatorSink:
    """Posts each offer's canonical bytes to ``POST {url}/api/v1/offers``, signed by the
    relay's identity (which the coordinator must list with ``--relay``)."""

    def __init__(self, client: CoordinatorClient) -> None:
        self._client = client

    async def submit(self, offer: Offer) -> None:
        answer = await self._client.post_offer_bytes(offer_bytes(offer))
        log.debug("index answered %s for offer %s", answer.get("status"), offer.offer_id.hex())


class RelayStats:
    def __init__(self) -> None:
        self.relayed = 0
        self.duplicates = 0
        self.failed = 0


async def relay_offers(
    offers: AsyncIterator[Offer],
    sink: OfferSink,
    *,
    timeout_s: float = 10.0,
    remember: int = 4096,
    stats: RelayStats | None = None,
) -> None:
    """Hand every offer from ``offers`` to ``sink`` once (identical offers heard again
    through gossip are skipped); a refused or failed delivery is logged and skipped."""
    stats = stats or RelayStats()
    seen: OrderedDict[bytes, None] = OrderedDict()
    async for offer in offers:
        if offer.sig in seen:
            stats.duplicates += 1
            continue
        seen[offer.sig] = None
        if len(seen) > remember:
            seen.popitem(last=False)
        with trio.move_on_after(timeout_s) as scope:
            try:
                await sink.submit(offer)
            except DgpuError as exc:
                stats.failed += 1
                log.warning("index refused offer %s: %s", offer.offer_id.hex(), exc)
                continue
        if scope.cancelled_caught:
            stats.failed += 1
            log.warning("index did not answer within %gs", timeout_s)
            continue
        stats.relayed += 1
