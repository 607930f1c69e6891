"""Rate card: golden prices of the default card, model matching, the per-second rounding."""

from __future__ import annotations

import pytest
from dgpu.pricing import (
    BASE_UNITS_PER_DGPU,
    DEFAULT_RATE_CARD,
    AmountError,
    ModelRate,
    MultiplierConfig,
    PricingConfigError,
    RateCard,
    UnknownModel,
    per_second_price,
    price_per_gpu_hour,
    price_per_gpu_second,
    reference_price_per_gpu_hour,
    vram_gb_from_mb,
)
from hypothesis import given
from hypothesis import strategies as st

MODELS = DEFAULT_RATE_CARD.model_names


def test_default_rates_in_base_units() -> None:
    rates = {rate.model: rate.per_hour for rate in DEFAULT_RATE_CARD.models}
    assert rates == {
        "RTX 4090": 500_000_000,
        "RTX 4080": 400_000_000,
        "A100": 2_000_000_000,
        "H100": 3_000_000_000,
        "M3 Ultra": 1_200_000_000,
        "M2 Ultra": 1_000_000_000,
        "M1 Ultra": 800_000_000,
        "MI300X": 2_500_000_000,
        "MI250X": 1_600_000_000,
        "MI250": 1_400_000_000,
        "MI210": 800_000_000,
        "RX 7900 XTX": 300_000_000,
    }
    assert DEFAULT_RATE_CARD.vram_per_gb_hour == 20_000_000
    assert DEFAULT_RATE_CARD.power_per_watt_hour == 1_000_000
    assert DEFAULT_RATE_CARD.platform_fee_bps == 500
    assert DEFAULT_RATE_CARD.multiplier == MultiplierConfig(5_000, 20_000, 4)


def test_golden_h100_80gb_700w() -> None:
    # 3.00 + 80 * 0.02 + 700 * 0.001 = 5.30 dGPU per GPU-hour
    assert price_per_gpu_hour("H100", 80, 700) == 5_300_000_000
    # 5_300_000_000 / 3600 = 1_472_222.2..., rounded up
    assert price_per_gpu_second("H100", 80, 700) == 1_472_223
    # under the 2x ceiling of the multiplier: 10_600_000_000 / 3600 = 2_944_444.4...
    assert price_per_gpu_second("H100", 80, 700, multiplier_bps=20_000) == 2_944_445


@pytest.mark.parametrize(
    ("model", "hourly", "per_second"),
    [
        ("RTX 4090", 1_430_000_000, 397_223),  # 0.50 + 24 GB + 450 W
        ("RTX 4080", 1_040_000_000, 288_889),  # 0.40 + 16 GB + 320 W
        ("A100", 4_000_000_000, 1_111_112),  # 2.00 + 80 GB + 400 W
        ("H100", 5_300_000_000, 1_472_223),  # 3.00 + 80 GB + 700 W
        ("M3 Ultra", 3_600_000_000, 1_000_000),  # 1.20 + 96 GB + 480 W, exact
        ("M2 Ultra", 2_575_000_000, 715_278),  # 1.00 + 64 GB + 295 W
        ("M1 Ultra", 2_450_000_000, 680_556),  # 0.80 + 64 GB + 370 W
        ("MI300X", 7_090_000_000, 1_969_445),  # 2.50 + 192 GB + 750 W
        ("MI250X", 4_720_000_000, 1_311_112),  # 1.60 + 128 GB + 560 W
        ("MI250", 4_460_000_000, 1_238_889),  # 1.40 + 128 GB + 500 W
        ("MI210", 2_380_000_000, 661_112),  # 0.80 + 64 GB + 300 W
        ("RX 7900 XTX", 1_135_000_000, 315_278),  # 0.30 + 24 GB + 355 W
    ],
)
def test_golden_reference_specs(model: str, hourly: int, per_second: int) -> None:
    assert reference_price_per_gpu_hour(model) == hourly
    assert per_second_price(hourly) == per_second


def test_bare_model_rate_per_second() -> None:
    assert price_per_gpu_second("H100", 0, 0) == 833_334  # 3e9 / 3600 = 833_333.3
    assert price_per_gpu_second("M3 Ultra", 0, 0) == 333_334  # 1.2e9 / 3600 = 333_333.3


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("H100", "H100"),
        ("h100", "H100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA GeForce RTX 4080 SUPER", "RTX 4080"),
        ("Apple M3 Ultra", "M3 Ultra"),
        ("apple m2-ultra", "M2 Ultra"),
        ("AMD Instinct MI300X", "MI300X"),
        ("AMD Instinct MI250X / MI250", "MI250X"),
        ("AMD Radeon RX 7900 XTX", "RX 7900 XTX"),
    ],
)
def test_model_names_resolve(name: str, model: str) -> None:
    assert DEFAULT_RATE_CARD.resolve_model(name) == model


@pytest.mark.parametrize("name", ["NVIDIA RTX A1000", "RTX 3090", "M3", "Ultra", "", "4090"])
def test_unknown_models_are_refused(name: str) -> None:
    with pytest.raises(UnknownModel) as info:
        price_per_gpu_second(name, 24, 300)
    assert info.value.model == name
    assert "H100" in str(info.value)


def test_longest_model_wins() -> None:
    card = RateCard(
        models=(ModelRate("H100", 10, 0, 0), ModelRate("H100 NVL", 20, 0, 0)),
        vram_per_gb_hour=0,
        power_per_watt_hour=0,
        platform_fee_bps=0,
    )
    assert card.resolve_model("NVIDIA H100 NVL") == "H100 NVL"
    assert card.resolve_model("NVIDIA H100 PCIe") == "H100"


def test_card_values_are_checked() -> None:
    with pytest.raises(PricingConfigError) as info:
        RateCard(DEFAULT_RATE_CARD.models, 0, 0, platform_fee_bps=10_001)
    assert info.value.key == "card.platform_fee_bps"
    with pytest.raises(PricingConfigError) as info:
        RateCard((ModelRate("H100", 1, 0, 0), ModelRate(" h100", 2, 0, 0)), 0, 0, 0)
    assert info.value.key == "models. h100"
    with pytest.raises(PricingConfigError) as info:
        ModelRate("H100", -1, 0, 0)
    assert info.value.key == "models.H100.per_hour"
    with pytest.raises(PricingConfigError) as info:
        MultiplierConfig(min_bps=10_000, max_bps=20_000)
    assert info.value.key == "multiplier.min_bps"
    with pytest.raises(PricingConfigError) as info:
        MultiplierConfig(min_bps=5_000, max_bps=9_000)
    assert info.value.key == "multiplier.max_bps"


def test_negative_specs_are_refused() -> None:
    with pytest.raises(AmountError) as info:
        price_per_gpu_second("H100", -1, 700)
    assert info.value.quantity == "vram_gb"
    with pytest.raises(AmountError) as info:
        price_per_gpu_second("H100", 80, -5)
    assert info.value.quantity == "power_w"


def test_vram_from_offer_megabytes() -> None:
    assert vram_gb_from_mb(81_559) == 80  # H100 80GB as NVML reports it
    assert vram_gb_from_mb(24_564) == 24  # RTX 4090
    assert vram_gb_from_mb(0) == 0


specs = st.tuples(
    st.sampled_from(MODELS), st.integers(0, 2048), st.integers(0, 5_000), st.integers(1, 40_000)
)


@given(specs)
def test_per_second_never_undercuts_the_card_and_is_at_most_one_unit_above(
    spec: tuple[str, int, int, int],
) -> None:
    model, vram, power, bps = spec
    hourly = price_per_gpu_hour(model, vram, power)
    price = price_per_gpu_second(model, vram, power, multiplier_bps=bps)
    exact_times = hourly * bps  # exact price * 10_000 * 3600
    assert price * 36_000_000 >= exact_times
    assert (price - 1) * 36_000_000 < exact_times
    assert price >= 1  # every default model has a non-zero rate


@given(specs, st.integers(0, 64), st.integers(0, 500), st.integers(0, 10_000))
def test_price_is_monotonic_in_vram_power_and_multiplier(
    spec: tuple[str, int, int, int], more_vram: int, more_power: int, more_bps: int
) -> None:
    model, vram, power, bps = spec
    price = price_per_gpu_second(model, vram, power, multiplier_bps=bps)
    assert price_per_gpu_second(model, vram + more_vram, power, multiplier_bps=bps) >= price
    assert price_per_gpu_second(model, vram, power + more_power, multiplier_bps=bps) >= price
    assert price_per_gpu_second(model, vram, power, multiplier_bps=bps + more_bps) >= price


def test_free_gpu_costs_nothing() -> None:
    card = RateCard((ModelRate("Free", 0, 0, 0),), 0, 0, 0)
    assert price_per_gpu_second("Free", 80, 700, card) == 0
    assert per_second_price(1) == 1  # and the smallest non-free price is one unit
    assert BASE_UNITS_PER_DGPU == 10**9
