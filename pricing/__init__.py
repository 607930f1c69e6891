"""dgpu.pricing: the rate card, the market multiplier, reference prices and job costs.

Pure (no I/O but :func:`load_rate_card` reading its one file), integers only: every amount
is token base units (the dGPU mint has 9 decimals: 1 dGPU = 1_000_000_000), every ratio is
basis points (10_000 bps = 1x). Decimal appears only at the edges, float never.

The formula, with its parts
---------------------------
1. **Card price** of one GPU for an hour (base units; :mod:`.card`)::

       hourly = model.per_hour + vram_gb * vram_per_gb_hour + power_w * power_per_watt_hour

   Default card (dGPU per GPU-hour): RTX 4090 0.50, RTX 4080 0.40, A100 2.00, H100 3.00,
   M3 Ultra 1.20, M2 Ultra 1.00, M1 Ultra 0.80, MI300X 2.50, MI250X 1.60, MI250 1.40,
   MI210 0.80, RX 7900 XTX 0.30; VRAM 0.02 per GB-hour; power 0.001 per watt-hour;
   platform fee 500 bps (5 %). Override it with a TOML file (:mod:`.config`).

2. **Multiplier** from the market (:mod:`.market`), bounded to ``[min_bps, max_bps]``
   (default 0.5x..2x), with ``D`` / ``S`` the GPUs rented in the recent window / offered
   now, each plus a smoothing pseudo-count ``s`` (default 4)::

       multiplier = (hi*k*D + lo*S) / (k*D + S),   k = (1 - lo) / (hi - 1)
                  = (2D + S) / (D + 2S)           for the default bounds

   1x when balanced, increasing in demand, decreasing in supply, rounded half up to bps.

3. **Per-second price**, one rounding, upward (never below the card; under 1 base unit
   per GPU-second above it; at least 1 for any GPU with a non-zero card price)::

       price_per_gpu_second = ceil(hourly * multiplier_bps / (10_000 * 3_600))

   The **reference price** of a model is this at the model's nominal VRAM and power, shown
   next to the market's p10 / median / p90 of live offers (nearest rank, per offered GPU).

4. **Provider policy** (:mod:`.provider`)::

       ask = max(floor, ceil(reference * (10_000 + markup_bps) / 10_000))

5. **Job cost** (:mod:`.cost`), per-second billing::

       amount_for(t, price, n) = t * n * price          (cumulative receipt after t seconds)
       subtotal = amount_for(duration, price, count);  total = deposit = subtotal
       fee = floor(subtotal * fee_bps / 10_000);       provider_net = subtotal - fee

   The fee is the platform's share carved out of what the renter pays (as the escrow
   program settles it), rounded down: never above the exact fee, under one unit below it.

Golden: H100, 80 GB, 700 W on the default card at 1x is 5.30 dGPU/h = 1_472_223 base
units per GPU-second; one hour of it on 1 GPU is 5_300_002_800, fee 265_000_140.

Probe bands (:mod:`.bands`): the GFLOP/s a healthy GPU of each card model measures on the
probe job's workload, from vendors' datasheets.

Errors: see :mod:`.errors` (``PricingError`` and its tree).
"""

from dgpu.pricing.bands import (
    PROBE_BANDS,
    PROBE_FLOPS,
    PROBE_ITERATIONS,
    PROBE_SIZE,
    PROBE_WORKLOAD,
    ThroughputBand,
    band_for,
)
from dgpu.pricing.card import (
    DEFAULT_RATE_CARD,
    NEUTRAL_BPS,
    ModelRate,
    MultiplierConfig,
    RateCard,
    per_second_price,
    price_per_gpu_hour,
    price_per_gpu_second,
    reference_price_per_gpu_hour,
)
from dgpu.pricing.config import load_rate_card, parse_provider_pricing, parse_rate_card
from dgpu.pricing.cost import CostEstimate, amount_for, estimate_cost, fee_for
from dgpu.pricing.errors import AmountError, PricingConfigError, PricingError, UnknownModel
from dgpu.pricing.market import (
    MarketStats,
    PricedOffer,
    ReferencePrice,
    Rental,
    market_stats,
    multiplier_bps,
    percentile,
    reference_price,
    reference_prices,
)
from dgpu.pricing.provider import ProviderPricing, provider_price
from dgpu.pricing.units import (
    BASE_UNITS_PER_DGPU,
    BPS_DENOMINATOR,
    DECIMALS,
    MAX_AMOUNT,
    SECONDS_PER_HOUR,
    base_units_to_dgpu,
    dgpu_to_base_units,
    vram_gb_from_mb,
)

__all__ = [
    "BASE_UNITS_PER_DGPU",
    "BPS_DENOMINATOR",
    "DECIMALS",
    "DEFAULT_RATE_CARD",
    "MAX_AMOUNT",
    "NEUTRAL_BPS",
    "PROBE_BANDS",
    "PROBE_FLOPS",
    "PROBE_ITERATIONS",
    "PROBE_SIZE",
    "PROBE_WORKLOAD",
    "SECONDS_PER_HOUR",
    "AmountError",
    "CostEstimate",
    "MarketStats",
    "ModelRate",
    "MultiplierConfig",
    "PricedOffer",
    "PricingConfigError",
    "PricingError",
    "ProviderPricing",
    "RateCard",
    "ReferencePrice",
    "Rental",
    "ThroughputBand",
    "UnknownModel",
    "amount_for",
    "band_for",
    "base_units_to_dgpu",
    "dgpu_to_base_units",
    "estimate_cost",
    "fee_for",
    "load_rate_card",
    "market_stats",
    "multiplier_bps",
    "parse_provider_pricing",
    "parse_rate_card",
    "per_second_price",
    "percentile",
    "price_per_gpu_hour",
    "price_per_gpu_second",
    "provider_price",
    "reference_price",
    "reference_price_per_gpu_hour",
    "reference_prices",
    "vram_gb_from_mb",
]
