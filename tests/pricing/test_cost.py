"""Job costs: per-second billing, the platform fee and its rounding, the deposit."""

from __future__ import annotations

import pytest
from dgpu.pricing import (
    MAX_AMOUNT,
    AmountError,
    CostEstimate,
    amount_for,
    estimate_cost,
    fee_for,
    price_per_gpu_second,
)
from hypothesis import given
from hypothesis import strategies as st

seconds = st.integers(0, 30 * 24 * 3600)
gpus = st.integers(0, 64)
prices = st.integers(0, 10**9)  # up to 1 dGPU per GPU-second
fees = st.integers(0, 10_000)
amounts = st.integers(0, MAX_AMOUNT)


def test_golden_h100_hour() -> None:
    price = price_per_gpu_second("H100", 80, 700)
    assert estimate_cost("H100", 1, 3600, price) == CostEstimate(
        model="H100",
        gpu_count=1,
        duration_seconds=3600,
        price_per_gpu_second=1_472_223,
        subtotal=5_300_002_800,
        fee_bps=500,
        fee=265_000_140,
        provider_net=5_035_002_660,
        total=5_300_002_800,
        deposit=5_300_002_800,
    )


def test_golden_eight_gpus_ninety_seconds_with_odd_fee() -> None:
    cost = estimate_cost("RTX 4090", 8, 90, 397_223, fee_bps=333)
    assert cost.subtotal == 90 * 8 * 397_223 == 286_000_560
    assert cost.fee == 9_523_818  # 286_000_560 * 0.0333 = 9_523_818.648, rounded down
    assert cost.provider_net == 276_476_742
    assert cost.total == cost.deposit == cost.subtotal


def test_per_second_billing() -> None:
    assert amount_for(0, 1_472_223, 8) == 0
    assert amount_for(1, 1_472_223, 8) == 11_777_784
    assert amount_for(61, 5, 3) == 915


@given(seconds, prices, gpus)
def test_amount_is_never_negative_and_exact(elapsed: int, price: int, count: int) -> None:
    amount = amount_for(elapsed, price, count)
    assert amount >= 0
    assert amount == elapsed * price * count


@given(seconds, seconds, prices, gpus, gpus)
def test_amount_is_monotonic_in_duration_and_count(
    elapsed: int, later: int, price: int, count: int, more: int
) -> None:
    amount = amount_for(elapsed, price, count)
    assert amount_for(elapsed + later, price, count) >= amount
    assert amount_for(elapsed, price, count + more) >= amount


@given(seconds, seconds, prices, st.integers(1, 64), st.integers(0, 64), fees)
def test_estimate_is_monotonic_in_duration_and_count(
    duration: int, longer: int, price: int, count: int, more: int, fee_bps: int
) -> None:
    cost = estimate_cost("H100", count, duration, price, fee_bps)
    for bigger in (
        estimate_cost("H100", count, duration + longer, price, fee_bps),
        estimate_cost("H100", count + more, duration, price, fee_bps),
    ):
        assert bigger.total >= cost.total
        assert bigger.fee >= cost.fee
        assert bigger.provider_net >= cost.provider_net
        assert bigger.deposit >= cost.deposit


@given(seconds, prices, st.integers(1, 64), fees)
def test_estimate_parts_add_up(duration: int, price: int, count: int, fee_bps: int) -> None:
    cost = estimate_cost("A100", count, duration, price, fee_bps)
    assert min(cost.subtotal, cost.fee, cost.provider_net, cost.total, cost.deposit) >= 0
    assert cost.fee + cost.provider_net == cost.total == cost.subtotal
    assert cost.deposit >= cost.total


@given(amounts, fees)
def test_fee_never_rounds_in_the_platforms_favour(amount: int, fee_bps: int) -> None:
    fee = fee_for(amount, fee_bps)
    exact_times = amount * fee_bps  # exact fee * 10_000
    assert fee * 10_000 <= exact_times  # never above the exact fee
    assert (fee + 1) * 10_000 > exact_times  # and under one unit below it
    assert 0 <= fee <= amount


@given(st.lists(st.integers(0, 10**15), max_size=20), fees)
def test_settling_in_steps_never_pays_more_fee(steps: list[int], fee_bps: int) -> None:
    # the escrow floors the fee of each settled delta; the sum stays within the one-shot fee
    assert sum(fee_for(step, fee_bps) for step in steps) <= fee_for(sum(steps), fee_bps)


def test_negative_inputs_and_overflow_are_refused() -> None:
    with pytest.raises(AmountError) as info:
        amount_for(-1, 5, 1)
    assert info.value.quantity == "elapsed_seconds"
    with pytest.raises(AmountError) as info:
        amount_for(10, -5, 1)
    assert info.value.quantity == "price_per_gpu_second"
    with pytest.raises(AmountError) as info:
        estimate_cost("H100", -1, 10, 5)
    assert info.value.quantity == "gpu_count"
    with pytest.raises(AmountError) as info:
        amount_for(30 * 24 * 3600, MAX_AMOUNT // 1000, 64)
    assert info.value.quantity == "amount"
    with pytest.raises(AmountError) as info:
        fee_for(100, 10_001)
    assert info.value.quantity == "fee_bps"
