"""What a job costs: per-second billing, the platform fee, and the deposit.

::

    subtotal     = duration_seconds * gpu_count * price_per_gpu_second
    fee          = floor(subtotal * fee_bps / 10_000)
    provider_net = subtotal - fee
    total        = subtotal
    deposit      = total

The quoted price is what the renter pays: the renter's receipts sign for ``subtotal``
cumulatively, and the escrow program carves the platform fee out of each settlement, paying
``fee`` to the treasury and ``provider_net`` to the provider. So the renter's ``total`` is the
subtotal, the fee is shown separately as the platform's share of it, and the deposit to escrow
is the whole total (the renter can never be asked for more). The fee is rounded down: never
more than the exact fee, and less by under one base unit. Settling in several steps floors
each step, which can only lower the fee further (see :func:`fee_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dgpu.pricing.card import DEFAULT_RATE_CARD
from dgpu.pricing.errors import AmountError
from dgpu.pricing.units import BPS_DENOMINATOR, check_amount, check_non_negative


def amount_for(elapsed_seconds: int, price_per_gpu_second: int, gpu_count: int) -> int:
    """Cumulative amount owed after ``elapsed_seconds``: seconds x GPUs x price, exact.

    Raises :class:`~dgpu.pricing.AmountError` for a negative input or a result beyond
    :data:`~dgpu.pricing.MAX_AMOUNT`.
    """
    check_non_negative("elapsed_seconds", elapsed_seconds)
    check_non_negative("price_per_gpu_second", price_per_gpu_second)
    check_non_negative("gpu_count", gpu_count)
    return check_amount("amount", elapsed_seconds * gpu_count * price_per_gpu_second)


def fee_for(amount: int, fee_bps: int) -> int:
    """The platform's share of ``amount``: ``floor(amount * fee_bps / 10_000)``.

    ``fee * 10_000 <= amount * fee_bps < (fee + 1) * 10_000``. Flooring is superadditive:
    ``fee_for(a, f) + fee_for(b, f) <= fee_for(a + b, f)``, so a channel settled in several
    steps never pays more fee than one settled at once.
    """
    check_amount("amount", amount)
    if not 0 <= fee_bps <= BPS_DENOMINATOR:
        raise AmountError("fee_bps", fee_bps, f"must be between 0 and {BPS_DENOMINATOR}")
    return amount * fee_bps // BPS_DENOMINATOR


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """A job's cost with its parts, all in base units."""

    model: str
    gpu_count: int
    duration_seconds: int
    price_per_gpu_second: int
    subtotal: int
    """``duration_seconds * gpu_count * price_per_gpu_second``."""
    fee_bps: int
    fee: int
    """The platform's share of the subtotal, rounded down."""
    provider_net: int
    """What the provider receives: ``subtotal - fee``."""
    total: int
    """What the renter pays: the subtotal (the fee is inside it, not on top)."""
    deposit: int
    """What the renter escrows when opening the channel: the total."""


def estimate_cost(
    model: str,
    gpu_count: int,
    duration_seconds: int,
    price_per_gpu_second: int,
    fee_bps: int = DEFAULT_RATE_CARD.platform_fee_bps,
) -> CostEstimate:
    """Cost of running ``gpu_count`` GPUs of ``model`` for ``duration_seconds`` at a price."""
    subtotal = amount_for(duration_seconds, price_per_gpu_second, gpu_count)
    fee = fee_for(subtotal, fee_bps)
    return CostEstimate(
        model=model,
        gpu_count=gpu_count,
        duration_seconds=duration_seconds,
        price_per_gpu_second=price_per_gpu_second,
        subtotal=subtotal,
        fee_bps=fee_bps,
        fee=fee,
        provider_net=subtotal - fee,
        total=subtotal,
        deposit=subtotal,
    )
