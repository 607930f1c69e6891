"""A provider's floor and markup applied to the reference price."""

from __future__ import annotations

import pytest
from dgpu.pricing import (
    AmountError,
    PricingConfigError,
    ProviderPricing,
    parse_provider_pricing,
    provider_price,
)
from hypothesis import given
from hypothesis import strategies as st


def test_markup_rounds_up_and_floor_holds() -> None:
    assert provider_price(1_472_223, ProviderPricing()) == 1_472_223
    # +10 %: 1_619_445.3 -> 1_619_446
    assert provider_price(1_472_223, ProviderPricing(markup_bps=1_000)) == 1_619_446
    # -25 %: 1_104_167.25 -> 1_104_168
    assert provider_price(1_472_223, ProviderPricing(markup_bps=-2_500)) == 1_104_168
    assert provider_price(1_000, ProviderPricing(floor_per_gpu_second=5_000)) == 5_000
    assert provider_price(0, ProviderPricing(markup_bps=-10_000)) == 0


@given(
    st.integers(0, 10**12),
    st.integers(0, 10**9),
    st.integers(-10_000, 100_000),
    st.integers(0, 10**6),
)
def test_ask_is_above_floor_and_monotonic(
    reference: int, floor: int, markup: int, more: int
) -> None:
    policy = ProviderPricing(floor_per_gpu_second=floor, markup_bps=markup)
    ask = provider_price(reference, policy)
    assert ask >= floor
    assert ask * 10_000 >= reference * (10_000 + markup)
    assert provider_price(reference + more, policy) >= ask


def test_policy_values_are_checked() -> None:
    with pytest.raises(PricingConfigError) as info:
        ProviderPricing(markup_bps=-10_001)
    assert info.value.key == "provider.markup_bps"
    with pytest.raises(PricingConfigError) as info:
        ProviderPricing(floor_per_gpu_second=-1)
    assert info.value.key == "provider.floor_per_gpu_second"
    with pytest.raises(AmountError):
        provider_price(-1, ProviderPricing())


def test_policy_from_a_toml_table() -> None:
    policy = parse_provider_pricing({"floor_per_gpu_hour": "1.50", "markup_bps": 1_000})
    # 1_500_000_000 / 3600 = 416_666.6 -> 416_667
    assert policy == ProviderPricing(floor_per_gpu_second=416_667, markup_bps=1_000)
    assert parse_provider_pricing({}) == ProviderPricing()


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"floor_per_hour": "1"}, "node.pricing.floor_per_hour"),
        ({"floor_per_gpu_hour": 1.5}, "node.pricing.floor_per_gpu_hour"),
        ({"floor_per_gpu_hour": "-1"}, "node.pricing.floor_per_gpu_hour"),
        ({"markup_bps": "10"}, "node.pricing.markup_bps"),
        ({"markup_bps": -20_000}, "node.pricing.markup_bps"),
    ],
)
def test_policy_errors_name_the_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(PricingConfigError) as info:
        parse_provider_pricing(table, key_prefix="node.pricing")
    assert info.value.key == key
    assert key in str(info.value)
