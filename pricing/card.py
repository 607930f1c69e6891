"""The rate card: what an hour of a GPU costs, and its per-second price.

All rates are integers of base units (1 dGPU = 10**9). The card price of one GPU for one
hour is::

    hourly = model.per_hour + vram_gb * vram_per_gb_hour + power_w * power_per_watt_hour

and its price per GPU-second, under a market multiplier in basis points, is::

    per_second = ceil(hourly * multiplier_bps / (10_000 * 3_600))

There is exactly one rounding, at the very end, and it is upward: the per-second price
never undercuts the card (a provider billed per second earns at least the hourly rate),
it is off by less than one base unit per GPU-second (under 3.6e-6 dGPU per hour), and any
GPU with a non-zero hourly price costs at least 1 base unit per second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from dgpu.pricing.errors import PricingConfigError, UnknownModel
from dgpu.pricing.units import (
    BASE_UNITS_PER_DGPU,
    BPS_DENOMINATOR,
    SECONDS_PER_HOUR,
    ceil_div,
    check_non_negative,
)

NEUTRAL_BPS: Final = BPS_DENOMINATOR
"""A multiplier of 1x."""

_SEPARATORS = re.compile(r"[^A-Z0-9]+")


def model_tokens(name: str) -> tuple[str, ...]:
    """Upper-cased alphanumeric words of a model name: ``"NVIDIA A100-SXM4"`` -> A100, SXM4."""
    return tuple(token for token in _SEPARATORS.split(name.upper()) if token)


@dataclass(frozen=True, slots=True)
class ModelRate:
    """The base rate of one GPU model, and the nominal spec its reference price uses."""

    model: str
    per_hour: int
    """Base units per GPU-hour, before the VRAM and power components."""
    reference_vram_gb: int
    reference_power_w: int

    def __post_init__(self) -> None:
        if not model_tokens(self.model):
            raise PricingConfigError("a model name needs a letter or digit", key="models")
        for name in ("per_hour", "reference_vram_gb", "reference_power_w"):
            if getattr(self, name) < 0:
                raise PricingConfigError("must not be negative", key=f"models.{self.model}.{name}")


@dataclass(frozen=True, slots=True)
class MultiplierConfig:
    """Bounds and smoothing of the demand/supply multiplier (see :mod:`dgpu.pricing.market`).

    ``min_bps < 10_000 < max_bps``, or both equal 10_000 to switch the multiplier off.
    ``smoothing_gpus`` is a pseudo-count added to both demand and supply so a thin market
    stays near 1x.
    """

    min_bps: int = 5_000
    max_bps: int = 20_000
    smoothing_gpus: int = 4

    def __post_init__(self) -> None:
        check_multiplier_bounds(self.min_bps, self.max_bps, key_prefix="multiplier.")
        if self.smoothing_gpus < 0:
            raise PricingConfigError("must not be negative", key="multiplier.smoothing_gpus")


def check_multiplier_bounds(min_bps: int, max_bps: int, *, key_prefix: str = "") -> None:
    """Raise :class:`PricingConfigError` unless the bounds straddle 1x (or both are 1x)."""
    if min_bps == max_bps == NEUTRAL_BPS:
        return
    if not 0 < min_bps < NEUTRAL_BPS:
        raise PricingConfigError(
            f"must be above 0 and below {NEUTRAL_BPS} (1x), got {min_bps}",
            key=f"{key_prefix}min_bps",
        )
    if max_bps <= NEUTRAL_BPS:
        raise PricingConfigError(
            f"must be above {NEUTRAL_BPS} (1x), got {max_bps}", key=f"{key_prefix}max_bps"
        )


@dataclass(frozen=True, slots=True)
class RateCard:
    """Rates in base units; immutable; build one with :func:`dgpu.pricing.load_rate_card`."""

    models: tuple[ModelRate, ...]
    vram_per_gb_hour: int
    """Base units per GB of VRAM per hour."""
    power_per_watt_hour: int
    """Base units per watt-hour (a GPU drawing ``power_w`` for an hour uses ``power_w`` Wh)."""
    platform_fee_bps: int
    multiplier: MultiplierConfig = MultiplierConfig()
    _index: dict[tuple[str, ...], ModelRate] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        for name in ("vram_per_gb_hour", "power_per_watt_hour"):
            if getattr(self, name) < 0:
                raise PricingConfigError("must not be negative", key=f"card.{name}")
        if not 0 <= self.platform_fee_bps <= BPS_DENOMINATOR:
            raise PricingConfigError(
                f"must be between 0 and {BPS_DENOMINATOR}, got {self.platform_fee_bps}",
                key="card.platform_fee_bps",
            )
        index: dict[tuple[str, ...], ModelRate] = {}
        for rate in self.models:
            tokens = model_tokens(rate.model)
            if tokens in index:
                raise PricingConfigError(
                    f"same model as {index[tokens].model!r}", key=f"models.{rate.model}"
                )
            index[tokens] = rate
        object.__setattr__(self, "_index", index)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(rate.model for rate in self.models)

    def rate_for(self, model: str) -> ModelRate:
        """The rate of ``model``, matched loosely, or :class:`UnknownModel`.

        Names are compared as upper-cased alphanumeric words. A name equal to a card model
        matches it; otherwise the card model whose words appear consecutively in the name
        matches, the longest such model winning (``"NVIDIA GeForce RTX 4090"`` -> RTX 4090,
        ``"NVIDIA H100 80GB HBM3"`` -> H100, ``"Apple M3 Ultra"`` -> M3 Ultra; ``"RTX A1000"``
        matches no A100).
        """
        tokens = model_tokens(model)
        exact = self._index.get(tokens)
        if exact is not None:
            return exact
        best: ModelRate | None = None
        best_len = 0
        for key, rate in self._index.items():
            if len(key) > best_len and _contains_run(tokens, key):
                best, best_len = rate, len(key)
        if best is None:
            raise UnknownModel(model, self.model_names)
        return best

    def resolve_model(self, model: str) -> str:
        """The card's own name for ``model`` (``"NVIDIA H100 PCIe"`` -> ``"H100"``)."""
        return self.rate_for(model).model


def _contains_run(tokens: tuple[str, ...], run: tuple[str, ...]) -> bool:
    width = len(run)
    return any(tokens[i : i + width] == run for i in range(len(tokens) - width + 1))


def _dgpu(hundredths: int) -> int:
    return hundredths * BASE_UNITS_PER_DGPU // 100


DEFAULT_RATE_CARD: Final = RateCard(
    models=(
        ModelRate("RTX 4090", _dgpu(50), reference_vram_gb=24, reference_power_w=450),
        ModelRate("RTX 4080", _dgpu(40), reference_vram_gb=16, reference_power_w=320),
        ModelRate("A100", _dgpu(200), reference_vram_gb=80, reference_power_w=400),
        ModelRate("H100", _dgpu(300), reference_vram_gb=80, reference_power_w=700),
        ModelRate("M3 Ultra", _dgpu(120), reference_vram_gb=96, reference_power_w=480),
        ModelRate("M2 Ultra", _dgpu(100), reference_vram_gb=64, reference_power_w=295),
        ModelRate("M1 Ultra", _dgpu(80), reference_vram_gb=64, reference_power_w=370),
        # AMD: Instinct priced a little under the NVIDIA part of its generation (MI300X
        # against H100, MI250X/MI250 against A100; fewer ready-made images), Radeon RX 7900
        # XTX under the RTX 4080; VRAM and power on top as for every GPU
        ModelRate("MI300X", _dgpu(250), reference_vram_gb=192, reference_power_w=750),
        ModelRate("MI250X", _dgpu(160), reference_vram_gb=128, reference_power_w=560),
        ModelRate("MI250", _dgpu(140), reference_vram_gb=128, reference_power_w=500),
        ModelRate("MI210", _dgpu(80), reference_vram_gb=64, reference_power_w=300),
        ModelRate("RX 7900 XTX", _dgpu(30), reference_vram_gb=24, reference_power_w=355),
    ),
    vram_per_gb_hour=_dgpu(2),  # 0.02 dGPU
    power_per_watt_hour=BASE_UNITS_PER_DGPU // 1000,  # 0.001 dGPU
    platform_fee_bps=500,  # 5 %
)
"""The default card. Reference specs are nominal: VRAM of the common variant, board power
(NVIDIA, AMD) or the maximum system power of the Mac Studio (Apple)."""


def price_per_gpu_hour(
    model: str, vram_gb: int, power_w: int, card: RateCard = DEFAULT_RATE_CARD
) -> int:
    """Card price of one GPU for one hour in base units (exact, before any multiplier)."""
    check_non_negative("vram_gb", vram_gb)
    check_non_negative("power_w", power_w)
    rate = card.rate_for(model)
    return rate.per_hour + vram_gb * card.vram_per_gb_hour + power_w * card.power_per_watt_hour


def per_second_price(hourly: int, multiplier_bps: int = NEUTRAL_BPS) -> int:
    """``ceil(hourly * multiplier_bps / (10_000 * 3_600))``: the one rounding step, upward."""
    check_non_negative("hourly", hourly)
    check_non_negative("multiplier_bps", multiplier_bps)
    return ceil_div(hourly * multiplier_bps, BPS_DENOMINATOR * SECONDS_PER_HOUR)


def price_per_gpu_second(
    model: str,
    vram_gb: int,
    power_w: int,
    card: RateCard = DEFAULT_RATE_CARD,
    multiplier_bps: int = NEUTRAL_BPS,
) -> int:
    """Base units per GPU-second: the card's hourly price x multiplier, rounded up.

    H100 with 80 GB and 700 W on the default card at 1x: 3.00 + 1.60 + 0.70 = 5.30 dGPU/h
    = 5_300_000_000 / 3600 = 1_472_222.2 -> 1_472_223 base units per GPU-second.
    """
    hourly = price_per_gpu_hour(model, vram_gb, power_w, card)
    return per_second_price(hourly, multiplier_bps)


def reference_price_per_gpu_hour(model: str, card: RateCard = DEFAULT_RATE_CARD) -> int:
    """Card price per hour of ``model`` at its nominal (reference) VRAM and power."""
    rate = card.rate_for(model)
    return price_per_gpu_hour(rate.model, rate.reference_vram_gb, rate.reference_power_w, card)
