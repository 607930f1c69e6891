"""A provider's own pricing policy applied to a reference price.

::

    price = max(floor_per_gpu_second, ceil(reference * (10_000 + markup_bps) / 10_000))

``markup_bps`` may be negative (a discount) down to -10_000 (free); the floor is the least
the provider accepts whatever the market does. The markup rounds up, like every price here.
"""

from __future__ import annotations

from dataclasses import dataclass

from dgpu.pricing.errors import PricingConfigError
from dgpu.pricing.units import BPS_DENOMINATOR, MAX_AMOUNT, ceil_div, check_amount


@dataclass(frozen=True, slots=True)
class ProviderPricing:
    """A provider's floor (base units per GPU-second) and markup (basis points, may be < 0)."""

    floor_per_gpu_second: int = 0
    markup_bps: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.floor_per_gpu_second <= MAX_AMOUNT:
            raise PricingConfigError(
                f"must be between 0 and {MAX_AMOUNT}, got {self.floor_per_gpu_second}",
                key="provider.floor_per_gpu_second",
            )
        if self.markup_bps < -BPS_DENOMINATOR:
            raise PricingConfigError(
                f"must be at least {-BPS_DENOMINATOR} (free), got {self.markup_bps}",
                key="provider.markup_bps",
            )


def provider_price(reference_per_gpu_second: int, pricing: ProviderPricing) -> int:
    """The price a provider asks per GPU-second, from a reference price and its policy."""
    check_amount("reference_per_gpu_second", reference_per_gpu_second)
    marked = ceil_div(
        reference_per_gpu_second * (BPS_DENOMINATOR + pricing.markup_bps), BPS_DENOMINATOR
    )
    return check_amount("price_per_gpu_second", max(pricing.floor_per_gpu_second, marked))
