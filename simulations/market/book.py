"""The market-mode offer book: every online provider's free GPUs at its current ask.

Providers of one model differ only in their markup (a multiple of the policy's step) and
their free GPU count, and ``provider_price`` is monotonic in the markup for a given
reference price, so the book keeps, per model, one bucket per ``(markup, free GPUs)``:
an insertion-ordered dict of provider ids. Matching walks markups from the cheapest,
stops at the renter's limit, and takes the longest-waiting provider of the first bucket
with enough free GPUs (a deterministic tie-break). Every operation is O(markups x GPUs per
node) at worst, independent of the number of providers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dgpu.pricing import ProviderPricing, percentile, provider_price


@dataclass
class ModelBook:
    model: str
    markups: list[int]
    """Distinct markups (bps) of this model's providers, ascending."""
    floor_per_gpu_second: int
    max_gpus: int
    asks: list[int] = field(default_factory=list)
    """Ask per GPU-second of each markup under the current reference price."""
    free: dict[tuple[int, int], dict[int, None]] = field(default_factory=dict)
    """``(markup index, free GPUs)`` -> providers (ids) in that state."""
    free_gpus: int = 0
    """Free GPUs of online providers: the supply of the multiplier."""

    def reprice(self, reference_per_gpu_second: int) -> None:
        self.asks = [
            provider_price(reference_per_gpu_second, ProviderPricing(self.floor_per_gpu_second, m))
            for m in self.markups
        ]

    def add(self, provider: int, markup_index: int, free: int) -> None:
        if free <= 0:
            return
        self.free.setdefault((markup_index, free), {})[provider] = None
        self.free_gpus += free

    def remove(self, provider: int, markup_index: int, free: int) -> None:
        if free <= 0:
            return
        del self.free[(markup_index, free)][provider]
        self.free_gpus -= free

    def match(self, gpu_count: int, max_price: int) -> tuple[int, int, int] | None:
        """``(provider, markup index, its free GPUs)`` of the cheapest provider with at least
        ``gpu_count`` free GPUs asking at most ``max_price``; None when there is none."""
        for index, ask in enumerate(self.asks):
            if ask > max_price:
                return None
            for free in range(gpu_count, self.max_gpus + 1):
                bucket = self.free.get((index, free))
                if bucket:
                    return next(iter(bucket)), index, free
        return None

    def ask_percentiles(self) -> tuple[int, int, int] | None:
        """p10, median and p90 of the asks of the free GPUs (each GPU weighted once)."""
        pairs = [
            (self.asks[index], free * len(bucket))
            for (index, free), bucket in self.free.items()
            if bucket
        ]
        if not any(weight for _, weight in pairs):
            return None
        return percentile(pairs, 10), percentile(pairs, 50), percentile(pairs, 90)
