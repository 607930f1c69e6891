"""Market: the demand/supply multiplier, nearest-rank percentiles, reference prices."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dgpu.pricing import (
    DEFAULT_RATE_CARD,
    AmountError,
    MarketStats,
    MultiplierConfig,
    market_stats,
    multiplier_bps,
    percentile,
    reference_price,
    reference_prices,
)
from hypothesis import given
from hypothesis import strategies as st


@dataclass(frozen=True)
class Offer:
    gpu_model: str
    gpu_count: int
    price_per_gpu_second: int


@dataclass(frozen=True)
class Rented:
    gpu_model: str
    gpu_count: int


configs = st.builds(
    MultiplierConfig,
    min_bps=st.integers(1, 9_999),
    max_bps=st.integers(10_001, 100_000),
    smoothing_gpus=st.integers(0, 16),
)
counts = st.integers(0, 100_000)


def test_multiplier_golden_values() -> None:
    assert multiplier_bps(0, 0) == 10_000  # (2*4 + 4) / (4 + 2*4)
    assert multiplier_bps(7, 7) == 10_000
    assert multiplier_bps(10, 5) == 11_563  # D=14, S=9: 37/32 = 1.15625, half up
    assert multiplier_bps(5, 10) == 8_649  # D=9, S=14: 32/37 = 0.86486...
    assert multiplier_bps(1_000, 0) == 19_881  # D=1004, S=4: 2012/1012, tends to 2x
    assert multiplier_bps(1_000_000, 0) == 20_000  # 1.99999 rounds onto the bound
    assert multiplier_bps(0, 1_000_000) == 5_000  # tends to 0.5x (rounds onto it)
    no_smoothing = MultiplierConfig(smoothing_gpus=0)
    assert multiplier_bps(0, 0, no_smoothing) == 10_000
    assert multiplier_bps(3, 0, no_smoothing) == 20_000
    assert multiplier_bps(0, 3, no_smoothing) == 5_000
    assert multiplier_bps(9, 1, MultiplierConfig(10_000, 10_000)) == 10_000


@given(counts, counts, configs)
def test_multiplier_is_bounded(demand: int, supply: int, config: MultiplierConfig) -> None:
    assert config.min_bps <= multiplier_bps(demand, supply, config) <= config.max_bps


@given(counts, counts, st.integers(0, 1_000), configs)
def test_multiplier_rises_with_demand_and_falls_with_supply(
    demand: int, supply: int, more: int, config: MultiplierConfig
) -> None:
    bps = multiplier_bps(demand, supply, config)
    assert multiplier_bps(demand + more, supply, config) >= bps
    assert multiplier_bps(demand, supply + more, config) <= bps


@given(counts, configs)
def test_balanced_market_is_neutral(gpus: int, config: MultiplierConfig) -> None:
    assert multiplier_bps(gpus, gpus, config) == 10_000


def test_multiplier_refuses_negative_counts() -> None:
    with pytest.raises(AmountError) as info:
        multiplier_bps(-1, 3)
    assert info.value.quantity == "demand_gpus"


def test_nearest_rank_percentiles() -> None:
    prices = [(price, 1) for price in (15, 20, 35, 40, 50)]
    assert percentile(prices, 5) == 15
    assert percentile(prices, 30) == 20
    assert percentile(prices, 40) == 20
    assert percentile(prices, 50) == 35
    assert percentile(prices, 100) == 50
    assert percentile(prices, 0) == 15
    # weights count each GPU: 8 GPUs at 10 outweigh one at 100
    assert percentile([(100, 1), (10, 8)], 50) == 10
    assert percentile([(100, 1), (10, 8)], 90) == 100  # rank ceil(8.1) = 9
    assert percentile([(1, 1), (2, 1)], 50) == 1  # lower middle


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(AmountError):
        percentile([(1, 1)], 101)
    with pytest.raises(AmountError):
        percentile([(1, 0)], 50)


@given(st.lists(st.tuples(st.integers(0, 10**12), st.integers(1, 64)), min_size=1))
def test_percentiles_are_ordered_offered_prices(pairs: list[tuple[int, int]]) -> None:
    stats = market_stats(Offer("H100", count, price) for price, count in pairs)
    assert stats is not None
    assert stats.low <= stats.p10 <= stats.median <= stats.p90 <= stats.high
    offered = {price for price, _ in pairs}
    assert {stats.p10, stats.median, stats.p90} <= offered
    assert stats.gpus == sum(count for _, count in pairs)


def test_market_stats_of_nothing() -> None:
    assert market_stats([]) is None


def test_reference_prices_from_an_offer_book() -> None:
    offers = [
        Offer("NVIDIA H100 80GB HBM3", 8, 1_500_000),
        Offer("H100", 1, 1_400_000),
        Offer("NVIDIA H100 PCIe", 1, 2_000_000),
        Offer("NVIDIA GeForce RTX 4090", 2, 400_000),
        Offer("RTX 3090", 4, 100_000),  # not on the card: left out
    ]
    rentals = [Rented("H100", 8), Rented("NVIDIA H100 PCIe", 8), Rented("RTX 3090", 99)]
    prices = reference_prices(offers, rentals)
    assert list(prices) == list(DEFAULT_RATE_CARD.model_names)

    h100 = prices["H100"]
    assert (h100.demand_gpus, h100.supply_gpus) == (16, 10)
    assert h100.multiplier_bps == 11_250  # D=20, S=14: (40 + 14) / (20 + 28) = 1.125
    assert h100.card_price_per_gpu_hour == 5_300_000_000
    assert h100.card_price_per_gpu_second == 1_472_223
    # 5_300_000_000 * 11_250 / 36_000_000, exact
    assert h100.price_per_gpu_second == 1_656_250
    assert h100.market == MarketStats(
        offers=3,
        gpus=10,
        low=1_400_000,
        p10=1_400_000,
        median=1_500_000,
        p90=1_500_000,
        high=2_000_000,
    )

    rtx = prices["RTX 4090"]
    assert (rtx.demand_gpus, rtx.supply_gpus) == (0, 2)
    assert rtx.market is not None and rtx.market.median == 400_000

    idle = prices["A100"]
    assert idle.market is None
    assert idle.multiplier_bps == 10_000
    assert idle.price_per_gpu_second == idle.card_price_per_gpu_second == 1_111_112


def test_reference_price_of_one_model() -> None:
    ref = reference_price("Apple M3 Ultra", demand_gpus=100_000_000, supply_gpus=0)
    assert ref.model == "M3 Ultra"
    assert ref.multiplier_bps == 20_000
    assert ref.price_per_gpu_second == 2_000_000
