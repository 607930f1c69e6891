"""Units and exact integer helpers: base units, basis points, hours and seconds.

The dGPU mint has 9 decimals, so ``1 dGPU == 1_000_000_000`` base units. Every amount here
is an ``int`` of base units; :class:`~decimal.Decimal` appears only at the edges (parsing a
config value, showing an amount to a person), and float never.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

from dgpu.pricing.errors import AmountError

DECIMALS: Final = 9
BASE_UNITS_PER_DGPU: Final = 10**DECIMALS
SECONDS_PER_HOUR: Final = 3600
BPS_DENOMINATOR: Final = 10_000
"""Basis points per unit: 10_000 bps == 1x, 500 bps == 5 %."""
MAX_AMOUNT: Final = 2**63 - 1
"""Largest amount a wire message carries (msgspec bounds fit in int64; see dgpu.protocol)."""


def ceil_div(numerator: int, denominator: int) -> int:
    """``ceil(numerator / denominator)`` for a non-negative numerator and positive denominator."""
    return -(-numerator // denominator)


def check_non_negative(quantity: str, value: int) -> int:
    """Return ``value``, or raise :class:`AmountError` naming ``quantity`` if it is negative."""
    if value < 0:
        raise AmountError(quantity, value, "must not be negative")
    return value


def check_amount(quantity: str, value: int) -> int:
    """Return ``value`` if it fits an amount field (``0..MAX_AMOUNT``), else raise."""
    check_non_negative(quantity, value)
    if value > MAX_AMOUNT:
        raise AmountError(quantity, value, f"exceeds the largest amount {MAX_AMOUNT}")
    return value


def dgpu_to_base_units(value: Decimal | str | int) -> int:
    """Exact dGPU -> base units. ``"0.5"`` -> ``500_000_000``.

    Raises :class:`ValueError` for a value that is not a finite decimal, is negative, or has
    more than 9 decimals (it would need rounding, and config values must be exact).
    """
    try:
        amount = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    if amount < 0:
        raise ValueError(f"{value!r} is negative")
    scaled = amount.scaleb(DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more than {DECIMALS} decimals")
    return int(scaled)


def base_units_to_dgpu(amount: int) -> Decimal:
    """Base units -> an exact :class:`Decimal` of dGPU, for display. ``1`` -> ``0.000000001``,
    ``0`` -> ``0`` (not ``0E-9``, which is what scaling a zero prints)."""
    if amount == 0:
        return Decimal(0)
    return Decimal(amount).scaleb(-DECIMALS)


def vram_gb_from_mb(vram_mb: int) -> int:
    """Whole GB of an ``Offer.vram_mb`` (MiB as NVML reports), rounded to the nearest.

    81559 MiB (an H100 80GB) -> 80; 24564 MiB (an RTX 4090) -> 24.
    """
    check_non_negative("vram_mb", vram_mb)
    return (vram_mb + 512) // 1024
