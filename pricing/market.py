"""The market: demand/supply multiplier, offer-book percentiles, reference prices.

Multiplier
----------
``D = demand + s`` and ``S = supply + s`` are GPU counts per model (demand: GPUs in
agreements made during the recent window; supply: GPUs in live offers) with ``s`` the
smoothing pseudo-count. With bounds ``lo < 1 < hi`` (``lo``/``hi`` = ``min_bps``/``max_bps``
over 10_000) and ``k = (1 - lo) / (hi - 1)``::

    multiplier = (hi * k * D + lo * S) / (k * D + S)

a Möbius map of the ratio ``x = D / S`` onto ``[lo, hi]``: ``x = 0`` (no demand) gives
``lo``, a balanced market ``x = 1`` gives exactly 1x, ``x -> inf`` (no supply) tends to
``hi``. It is smooth (rational in D and S), strictly increasing in demand and strictly
decreasing in supply. With the default bounds 0.5x..2x, ``k = 1/2`` and it is simply::

    multiplier = (2D + S) / (D + 2S)

In basis points it is evaluated exactly in integers and rounded half up (a monotonic
rounding, so monotonicity and the bounds survive it). ``D = S = 0`` gives 1x.

Percentiles
-----------
Market percentiles weigh each offered GPU once (an offer of 8 GPUs counts 8 times) and use
the nearest-rank method: for ``W`` GPUs sorted by price, the p-th percentile is the price of
the GPU of rank ``max(1, ceil(p * W / 100))``. The median is p50 (the lower middle for even W).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from dgpu.pricing.card import (
    DEFAULT_RATE_CARD,
    NEUTRAL_BPS,
    MultiplierConfig,
    RateCard,
    per_second_price,
    reference_price_per_gpu_hour,
)
from dgpu.pricing.errors import AmountError, UnknownModel
from dgpu.pricing.units import ceil_div, check_non_negative


class PricedOffer(Protocol):
    """What the market needs of a live offer (``dgpu.protocol.messages.Offer`` fits)."""

    @property
    def gpu_model(self) -> str: ...
    @property
    def gpu_count(self) -> int: ...
    @property
    def price_per_gpu_second(self) -> int: ...


class Rental(Protocol):
    """What the market needs of a recent agreement (a ``Quote`` fits)."""

    @property
    def gpu_model(self) -> str: ...
    @property
    def gpu_count(self) -> int: ...


def multiplier_bps(
    demand_gpus: int, supply_gpus: int, config: MultiplierConfig = DEFAULT_RATE_CARD.multiplier
) -> int:
    """The demand/supply multiplier in basis points, within ``[min_bps, max_bps]``."""
    check_non_negative("demand_gpus", demand_gpus)
    check_non_negative("supply_gpus", supply_gpus)
    lo, hi = config.min_bps, config.max_bps
    if lo == hi:
        return lo
    demand = demand_gpus + config.smoothing_gpus
    supply = supply_gpus + config.smoothing_gpus
    # k = (1 - lo) / (hi - 1) with lo, hi in units of 1x; scaled so everything is an integer:
    # k_num / k_den = (10_000 - lo) / (hi - 10_000).
    k_num = NEUTRAL_BPS - lo
    k_den = hi - NEUTRAL_BPS
    numerator = hi * k_num * demand + lo * k_den * supply
    denominator = k_num * demand + k_den * supply
    if denominator == 0:
        return NEUTRAL_BPS
    return (2 * numerator + denominator) // (2 * denominator)


def percentile(weighted_prices: Iterable[tuple[int, int]], p: int) -> int:
    """Nearest-rank p-th percentile of ``(price, weight)`` pairs; weight 0 pairs are ignored.

    Raises :class:`AmountError` when ``p`` is outside 0..100 or no weight is positive.
    """
    if not 0 <= p <= 100:
        raise AmountError("p", p, "a percentile is between 0 and 100")
    pairs = sorted((price, weight) for price, weight in weighted_prices if weight > 0)
    total = sum(weight for _, weight in pairs)
    if total == 0:
        raise AmountError("weight", 0, "no prices to take a percentile of")
    rank = max(1, ceil_div(p * total, 100))
    seen = 0
    for price, weight in pairs:
        seen += weight
        if seen >= rank:
            return price
    raise AssertionError("unreachable: rank <= total")


@dataclass(frozen=True, slots=True)
class MarketStats:
    """Prices (base units per GPU-second) of the live offers of one model, per offered GPU."""

    offers: int
    gpus: int
    low: int
    p10: int
    median: int
    p90: int
    high: int


def market_stats(offers: Iterable[PricedOffer]) -> MarketStats | None:
    """Percentiles of the given offers' prices, weighted by GPU count; None if no GPU."""
    pairs = [(o.price_per_gpu_second, o.gpu_count) for o in offers if o.gpu_count > 0]
    if not pairs:
        return None
    for price, _ in pairs:
        check_non_negative("price_per_gpu_second", price)
    return MarketStats(
        offers=len(pairs),
        gpus=sum(weight for _, weight in pairs),
        low=min(price for price, _ in pairs),
        p10=percentile(pairs, 10),
        median=percentile(pairs, 50),
        p90=percentile(pairs, 90),
        high=max(price for price, _ in pairs),
    )


@dataclass(frozen=True, slots=True)
class ReferencePrice:
    """The reference price of one card model, with its parts."""

    model: str
    card_price_per_gpu_hour: int
    """Card price at the model's reference VRAM and power, at 1x (base units per GPU-hour)."""
    card_price_per_gpu_second: int
    """The same at 1x, per GPU-second (rounded up)."""
    demand_gpus: int
    supply_gpus: int
    multiplier_bps: int
    price_per_gpu_second: int
    """``ceil(card_price_per_gpu_hour * multiplier_bps / (10_000 * 3_600))``."""
    market: MarketStats | None
    """Percentiles of the live offers of this model; None when there are none."""


def reference_price(
    model: str,
    *,
    demand_gpus: int,
    supply_gpus: int,
    card: RateCard = DEFAULT_RATE_CARD,
    market: MarketStats | None = None,
) -> ReferencePrice:
    """The reference price of ``model`` (a card model, matched loosely) under this market."""
    rate = card.rate_for(model)
    hourly = reference_price_per_gpu_hour(rate.model, card)
    bps = multiplier_bps(demand_gpus, supply_gpus, card.multiplier)
    return ReferencePrice(
        model=rate.model,
        card_price_per_gpu_hour=hourly,
        card_price_per_gpu_second=per_second_price(hourly),
        demand_gpus=demand_gpus,
        supply_gpus=supply_gpus,
        multiplier_bps=bps,
        price_per_gpu_second=per_second_price(hourly, bps),
        market=market,
    )


def reference_prices(
    offers: Iterable[PricedOffer],
    rentals: Iterable[Rental],
    card: RateCard = DEFAULT_RATE_CARD,
) -> dict[str, ReferencePrice]:
    """Reference prices of every card model, keyed by the card's model name.

    ``offers`` is the live offer book (supply, and the market percentiles); ``rentals`` are
    the agreements of the recent window (demand). Offers and rentals are matched to card
    models with :meth:`RateCard.rate_for`; those of models the card does not know are left
    out (use :func:`market_stats` on them directly to show their market).
    """
    book: dict[str, list[PricedOffer]] = {name: [] for name in card.model_names}
    for offer in offers:
        name = _card_model(card, offer.gpu_model)
        if name is not None:
            book[name].append(offer)
    demand: dict[str, int] = dict.fromkeys(card.model_names, 0)
    for rental in rentals:
        name = _card_model(card, rental.gpu_model)
        if name is not None:
            demand[name] += check_non_negative("gpu_count", rental.gpu_count)
    return {
        name: reference_price(
            name,
            demand_gpus=demand[name],
            supply_gpus=_gpus(book[name]),
            card=card,
            market=market_stats(book[name]),
        )
        for name in card.model_names
    }


def _gpus(offers: Iterable[PricedOffer]) -> int:
    return sum(check_non_negative("gpu_count", offer.gpu_count) for offer in offers)


def _card_model(card: RateCard, model: str) -> str | None:
    try:
        return card.resolve_model(model)
    except UnknownModel:
        return None
