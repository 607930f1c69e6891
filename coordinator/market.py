"""Prices and scores from the stored state: reference prices (cached briefly), price
snapshots for the chart, and provider score refreshes."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dgpu.coordinator.scores import ScoreParts, score_parts, with_verification
from dgpu.coordinator.store import PriceSnapshot, Store
from dgpu.pricing import RateCard, ReferencePrice, UnknownModel, market_stats, reference_prices
from dgpu.pricing.card import model_tokens

log = logging.getLogger(__name__)

DEMAND_WINDOW_S = 3600
REFERENCE_MAX_AGE_S = 5
SCORE_MIN_INTERVAL_S = 10
"""A write rescores its provider at most this often; later writes wait for housekeeping
(and any profile read rescores at once)."""


@dataclass(frozen=True, slots=True)
class _Priced:
    gpu_model: str
    gpu_count: int
    price_per_gpu_second: int


class Market:
    def __init__(
        self,
        store: Store,
        card: RateCard,
        *,
        availability_window_s: int,
        verified_window_s: int = 7 * 24 * 3600,
    ) -> None:
        self.store = store
        self.card = card
        self.availability_window_s = availability_window_s
        self.verified_window_s = verified_window_s
        self._refs: dict[str, ReferencePrice] = {}
        self._refs_at: int | None = None
        self._scored_at: dict[str, int] = {}
        self._dirty: set[str] = set()

    def model_key(self, name: str) -> str:
        """The rate card's name for a model, or its normalised words when the card lacks it
        (``"NVIDIA GeForce RTX 4090"`` -> ``"RTX 4090"``, ``"gtx-1080"`` -> ``"GTX 1080"``)."""
        try:
            return self.card.resolve_model(name)
        except UnknownModel:
            return " ".join(model_tokens(name))

    def knows(self, model_key: str) -> bool:
        return model_key in self.card.model_names

    async def references(self, now: int, *, fresh: bool = False) -> dict[str, ReferencePrice]:
        """Reference prices of every card model under the live book (cached a few seconds)."""
        if not fresh and self._refs_at is not None and now - self._refs_at < REFERENCE_MAX_AGE_S:
            return self._refs
        live = await self.store.offers.live_rows(now)
        offers = [_Priced(r["model_key"], r["gpu_count"], r["price_per_gpu_second"]) for r in live]
        demand = await self.store.providers.recent_demand(now - DEMAND_WINDOW_S)
        rentals = [_Priced(r["gpu_model"], r["gpu_count"], 0) for r in demand]
        self._refs = reference_prices(offers, rentals, self.card)
        self._refs_at = now
        return self._refs

    async def market_of_unknown_models(self, now: int) -> dict[str, dict[str, int]]:
        """Percentiles of live offers of models the card does not know."""
        live = await self.store.offers.live_rows(now)
        book: dict[str, list[_Priced]] = {}
        for r in live:
            if not self.knows(r["model_key"]):
                book.setdefault(r["model_key"], []).append(
                    _Priced(r["model_key"], r["gpu_count"], r["price_per_gpu_second"])
                )
        result: dict[str, dict[str, int]] = {}
        for model, offers in sorted(book.items()):
            stats = market_stats(offers)
            if stats is not None:
                result[model] = {
                    "offers": stats.offers,
                    "gpus": stats.gpus,
                    "low": stats.low,
                    "p10": stats.p10,
                    "median": stats.median,
                    "p90": stats.p90,
                    "high": stats.high,
                }
        return result

    async def snapshot(self, now: int) -> None:
        """Store the current reference prices for the explorer's chart."""
        refs = await self.references(now, fresh=True)
        await self.store.prices.add(
            now,
            [
                PriceSnapshot(
                    model=ref.model,
                    reference=ref.price_per_gpu_second,
                    multiplier_bps=ref.multiplier_bps,
                    median=ref.market.median if ref.market else None,
                    p10=ref.market.p10 if ref.market else None,
                    p90=ref.market.p90 if ref.market else None,
                    gpus=ref.supply_gpus,
                )
                for ref in refs.values()
            ],
        )

    async def score(self, address: str, now: int, *, save: bool = True) -> ScoreParts | None:
        """Compute (and cache in the store) the score of a provider; None if unknown."""
        row = await self.store.providers.get(address)
        if row is None:
            return None
        refs = await self.references(now)
        window = self.availability_window_s
        parts = score_parts(
            jobs=await self.store.providers.jobs(address),
            intervals=await self.store.providers.intervals(address, now - window),
            first_seen=row["first_seen"],
            now=now,
            window_s=window,
            settled=await self.store.providers.settled(address),
            offers=await self.store.providers.live_offer_prices(address, now),
            references={name: ref.price_per_gpu_second for name, ref in refs.items()},
        )
        standing = await self.store.verdicts.standing(address, now - self.verified_window_s)
        parts = with_verification(parts, standing)
        if save:
            await self.store.providers.save_score(address, parts, now)
            self._scored_at[address] = now
            self._dirty.discard(address)
        return parts

    async def touch(self, address: str, now: int) -> None:
        """Something about ``address`` changed: rescore it now, or soon if it just was."""
        if now - self._scored_at.get(address, now - SCORE_MIN_INTERVAL_S) >= SCORE_MIN_INTERVAL_S:
            await self.score(address, now)
        else:
            self._dirty.add(address)

    async def rescore_all(self, now: int) -> int:
        """Rescore the providers seen within the availability window and the dirty ones."""
        addresses = set(
            await self.store.providers.addresses(since=now - self.availability_window_s)
        )
        addresses |= self._dirty
        self._dirty.clear()
        for address in sorted(addresses):
            await self.score(address, now)
        return len(addresses)
