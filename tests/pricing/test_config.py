"""Rate cards from TOML files: overrides, merges, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from dgpu.pricing import (
    DEFAULT_RATE_CARD,
    ModelRate,
    MultiplierConfig,
    PricingConfigError,
    PricingError,
    load_rate_card,
    parse_rate_card,
    price_per_gpu_second,
)
from dgpu.protocol.errors import DgpuError


def test_empty_file_is_the_default_card(tmp_path: Path) -> None:
    path = tmp_path / "card.toml"
    path.write_text("")
    assert load_rate_card(path) == DEFAULT_RATE_CARD


def test_overrides_merge_into_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "card.toml"
    path.write_text(
        """
        [card]
        vram_per_gb_hour = "0.01"
        power_per_watt_hour = 0.0005       # a TOML decimal, read as Decimal
        platform_fee_bps = 250

        [models."h100"]                    # same model as the default H100
        per_hour = "2.5"

        [models."RTX 5090"]
        per_hour = 1
        reference_vram_gb = 32
        reference_power_w = 575

        [multiplier]
        max_bps = 30000
        smoothing_gpus = 0
        """
    )
    card = load_rate_card(path)
    assert card.vram_per_gb_hour == 10_000_000
    assert card.power_per_watt_hour == 500_000
    assert card.platform_fee_bps == 250
    assert card.multiplier == MultiplierConfig(min_bps=5_000, max_bps=30_000, smoothing_gpus=0)
    assert card.model_names == (*DEFAULT_RATE_CARD.model_names, "RTX 5090")
    assert card.rate_for("H100") == ModelRate("H100", 2_500_000_000, 80, 700)
    assert card.rate_for("NVIDIA GeForce RTX 5090") == ModelRate("RTX 5090", 1_000_000_000, 32, 575)
    # 2.50 + 80 * 0.01 + 700 * 0.0005 = 3.65 dGPU/h -> 1_013_888.8 -> 1_013_889
    assert price_per_gpu_second("H100", 80, 700, card) == 1_013_889


def test_replace_models_keeps_only_the_files_models() -> None:
    card = parse_rate_card(
        """
        [card]
        replace_models = true
        [models.H100]
        per_hour = "9"
        reference_vram_gb = 94
        reference_power_w = 400
        """
    )
    assert card.models == (ModelRate("H100", 9_000_000_000, 94, 400),)
    assert card.vram_per_gb_hour == DEFAULT_RATE_CARD.vram_per_gb_hour


def test_base_card_can_be_given() -> None:
    base = parse_rate_card("[card]\nplatform_fee_bps = 0")
    assert parse_rate_card("", base=base).platform_fee_bps == 0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour = 1", "colour"),
        ("[card]\nfee_bps = 500", "card.fee_bps"),
        ("[card]\nplatform_fee_bps = 10001", "card.platform_fee_bps"),
        ("[card]\nplatform_fee_bps = 5.0", "card.platform_fee_bps"),
        ("[card]\nplatform_fee_bps = true", "card.platform_fee_bps"),
        ('[card]\nvram_per_gb_hour = "0.0000000001"', "card.vram_per_gb_hour"),
        ('[card]\nvram_per_gb_hour = "-0.02"', "card.vram_per_gb_hour"),
        ('[card]\nvram_per_gb_hour = "cheap"', "card.vram_per_gb_hour"),
        ('[card]\npower_per_watt_hour = "NaN"', "card.power_per_watt_hour"),
        ("[card]\npower_per_watt_hour = true", "card.power_per_watt_hour"),
        ('[card]\nreplace_models = "yes"', "card.replace_models"),
        ("card = 3", "card"),
        ("models = 3", "models"),
        ("[models]\nH100 = 3", "models.H100"),
        ('[models.H100]\nper_hour = "1.5"\nvram = 3', "models.H100.vram"),
        ('[models.H100]\nper_hour = ["1"]', "models.H100.per_hour"),
        ("[models.H100]\nreference_power_w = -1", "models.H100.reference_power_w"),
        ('[models."RTX 5090"]\nper_hour = "1"', "models.RTX 5090.reference_power_w"),
        ('[models."RTX 5090"]\nreference_vram_gb = 32', "models.RTX 5090.per_hour"),
        ('[models."--"]\nper_hour = "1"', "models.--"),
        ("[card]\nreplace_models = true", "models"),
        ("[multiplier]\nmin_bps = 0", "multiplier.min_bps"),
        ("[multiplier]\nmin_bps = 12000", "multiplier.min_bps"),
        ("[multiplier]\nmax_bps = 10000", "multiplier.max_bps"),
        ("[multiplier]\nsmoothing_gpus = -1", "multiplier.smoothing_gpus"),
        ("[multiplier]\nstep = 1", "multiplier.step"),
    ],
)
def test_errors_name_the_key(text: str, key: str, tmp_path: Path) -> None:
    path = tmp_path / "card.toml"
    path.write_text(text)
    with pytest.raises(PricingConfigError) as info:
        load_rate_card(path)
    assert info.value.key == key
    assert info.value.path == str(path)
    assert repr(key) in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, PricingError)
    assert isinstance(info.value, DgpuError)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(PricingConfigError) as info:
        load_rate_card(missing)
    assert info.value.key is None
    assert info.value.path == str(missing)

    broken = tmp_path / "broken.toml"
    broken.write_text("[card\nplatform_fee_bps = 1")
    with pytest.raises(PricingConfigError, match="not valid TOML") as info:
        load_rate_card(broken)
    assert info.value.key is None

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PricingConfigError, match="cannot read"):
        load_rate_card(binary)


def test_floats_never_touch_money() -> None:
    # 0.1 + 0.2 as binary floats is not 0.3; read as Decimal it is exact
    card = parse_rate_card('[card]\nvram_per_gb_hour = 0.1\npower_per_watt_hour = "0.2"')
    assert card.vram_per_gb_hour + card.power_per_watt_hour == 300_000_000
