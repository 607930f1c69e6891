"""The provider's GPUs: prices, offers and who holds which GPU (pure, no I/O).

A GPU is free, reserved for an agreed job waiting for its channel (until a deadline), or
busy with a running job. Offers advertise the free GPUs of one model; the price of a model
comes from the config (a fixed price, or the rate card with the provider's floor/markup).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Final

from dgpu.node.config import ProviderConfig
from dgpu.node.gpu.types import GpuInfo
from dgpu.pricing import price_per_gpu_second, provider_price, vram_gb_from_mb
from dgpu.pricing.errors import UnknownModel
from dgpu.protocol.messages import GpuVendor
from dgpu.protocol.offers import OfferTerms

# Offer.gpu_uuids' wire bound; a driver's identifier outside it is left out of the offer.
_WIRE_UUID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")


def model_price(config: ProviderConfig, gpu: GpuInfo) -> int:
    """Base units per GPU-second this provider asks for ``gpu``."""
    if config.price_per_gpu_second is not None:
        return config.price_per_gpu_second
    try:
        reference = price_per_gpu_second(
            gpu.model,
            vram_gb_from_mb(gpu.vram_mb),
            gpu.power_limit_w,
            config.rate_card,
            config.multiplier_bps,
        )
    except UnknownModel:
        # A model the card does not know: only the provider's floor prices it.
        return max(1, config.pricing.floor_per_gpu_second)
    return provider_price(reference, config.pricing)


@dataclass
class _Hold:
    indices: tuple[int, ...]
    until: float | None  # trio time; None while the job runs


class GpuPool:
    """Which GPU is held by which job. Times are trio clock values (virtual in simulations)."""

    def __init__(self, gpus: list[GpuInfo]) -> None:
        self.gpus = sorted(gpus, key=lambda g: g.index)
        self._holds: dict[bytes, _Hold] = {}

    def models(self) -> list[str]:
        """Models present, the most numerous first (ties by name)."""
        counts = Counter(g.model for g in self.gpus)
        return sorted(counts, key=lambda m: (-counts[m], m))

    def _held(self) -> set[int]:
        return {i for hold in self._holds.values() for i in hold.indices}

    def free(self, model: str) -> list[GpuInfo]:
        held = self._held()
        return [g for g in self.gpus if g.model == model and g.index not in held]

    def expire(self, now: float) -> list[bytes]:
        """Drop reservations whose deadline passed; returns their job ids."""
        gone = [j for j, h in self._holds.items() if h.until is not None and h.until <= now]
        for job_id in gone:
            del self._holds[job_id]
        return gone

    def reserve(self, job_id: bytes, model: str, count: int, until: float) -> tuple[int, ...]:
        """Hold ``count`` free GPUs of ``model`` for ``job_id`` until ``until``; () if fewer
        are free."""
        if job_id in self._holds:
            return ()
        free = self.free(model)
        if len(free) < count:
            return ()
        indices = tuple(g.index for g in free[:count])
        self._holds[job_id] = _Hold(indices, until)
        return indices

    def occupy(self, job_id: bytes) -> tuple[int, ...]:
        """Turn a reservation into a running job's (no deadline)."""
        hold = self._holds[job_id]
        hold.until = None
        return hold.indices

    def extend(self, job_id: bytes, until: float) -> None:
        """Move a reservation's deadline (the agreement turns a quote's hold into one that
        waits for the channel)."""
        hold = self._holds[job_id]
        if hold.until is not None:
            hold.until = until

    def indices(self, job_id: bytes) -> tuple[int, ...]:
        hold = self._holds.get(job_id)
        return hold.indices if hold is not None else ()

    def holds(self, job_id: bytes) -> bool:
        return job_id in self._holds

    def release(self, job_id: bytes) -> None:
        self._holds.pop(job_id, None)

    def info(self, indices: tuple[int, ...]) -> list[GpuInfo]:
        by_index = {g.index: g for g in self.gpus}
        return [by_index[i] for i in indices]


def offer_terms(config: ProviderConfig, pool: GpuPool, model: str) -> OfferTerms | None:
    """Terms of an offer for the free GPUs of ``model``; None when none is free."""
    free = pool.free(model)
    if not free:
        return None
    offered = free[:64]
    vendors = {g.vendor for g in offered}
    vendor: GpuVendor = vendors.pop() if len(vendors) == 1 else "unknown"
    uuids = tuple(g.uuid for g in offered)
    if not all(g.board_uuid for g in offered) or not all(_WIRE_UUID.match(u) for u in uuids):
        uuids = ()
    return OfferTerms(
        gpu_model=model,
        gpu_count=len(offered),
        vram_mb=min(g.vram_mb for g in free),
        price_per_gpu_second=model_price(config, free[0]),
        mint=config.mint,
        region=config.region,
        max_duration_s=config.max_duration_s,
        simulated=any(g.simulated for g in free),
        power_w=max(g.power_limit_w for g in free),
        # what the backend read, as it read it; one driver name/version per offer (the
        # first GPU's: GPUs of one model on one machine share their driver)
        gpu_vendor=vendor,
        gpu_name=offered[0].raw_name,
        driver_version=offered[0].driver_version,
        gpu_uuids=uuids,
        executor=config.executor,
    )
