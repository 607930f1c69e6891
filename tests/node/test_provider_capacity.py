"""The provider's prices, GPU holds and offer terms (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from dgpu.node.config import ProviderConfig
from dgpu.node.gpu import GpuInfo
from dgpu.node.provider import GpuPool, model_price, offer_terms
from dgpu.pricing import ProviderPricing, price_per_gpu_second, provider_price

MINT = hashlib.sha256(b"mint").digest()
PROGRAM = hashlib.sha256(b"program").digest()
CONFIG = ProviderConfig(mint=MINT, program_id=PROGRAM)


def gpu(index: int, model: str = "RTX 4090", vram_mb: int = 24564) -> GpuInfo:
    return GpuInfo(index, f"GPU-{index}", model, model, vram_mb, 450, simulated=True)


def test_price_comes_from_the_card_with_markup_and_floor() -> None:
    card = price_per_gpu_second("RTX 4090", 24, 450)
    assert model_price(CONFIG, gpu(0)) == card
    marked = replace(CONFIG, pricing=ProviderPricing(markup_bps=1_000))
    assert model_price(marked, gpu(0)) == provider_price(card, ProviderPricing(markup_bps=1_000))
    assert model_price(marked, gpu(0)) > card
    floored = replace(CONFIG, pricing=ProviderPricing(floor_per_gpu_second=card * 3))
    assert model_price(floored, gpu(0)) == card * 3
    fixed = replace(CONFIG, price_per_gpu_second=7)
    assert model_price(fixed, gpu(0)) == 7


def test_a_model_the_card_does_not_know_is_priced_by_the_floor() -> None:
    odd = gpu(0, model="Quantum 9000", vram_mb=8192)
    assert model_price(CONFIG, odd) == 1
    floored = replace(CONFIG, pricing=ProviderPricing(floor_per_gpu_second=500))
    assert model_price(floored, odd) == 500


def test_holds_reserve_occupy_expire_and_release() -> None:
    pool = GpuPool([gpu(1), gpu(0), gpu(2, "H100", 81559)])
    assert pool.models() == ["RTX 4090", "H100"]
    assert pool.reserve(b"a", "RTX 4090", 2, until=10.0) == (0, 1)
    assert pool.reserve(b"b", "RTX 4090", 1, until=10.0) == ()  # none left
    assert pool.reserve(b"a", "H100", 1, until=10.0) == ()  # one hold per job
    assert pool.reserve(b"c", "H100", 1, until=5.0) == (2,)
    assert pool.expire(6.0) == [b"c"]
    assert [g.index for g in pool.free("H100")] == [2]
    assert pool.occupy(b"a") == (0, 1)
    assert pool.expire(1e9) == []  # a running job never expires
    pool.release(b"a")
    assert len(pool.free("RTX 4090")) == 2


def test_offer_terms_advertise_the_free_gpus_only() -> None:
    pool = GpuPool([gpu(0), gpu(1)])
    terms = offer_terms(CONFIG, pool, "RTX 4090")
    assert terms is not None
    assert (terms.gpu_count, terms.vram_mb, terms.simulated) == (2, 24564, True)
    assert terms.price_per_gpu_second == model_price(CONFIG, gpu(0))
    pool.reserve(b"x", "RTX 4090", 2, until=1.0)
    assert offer_terms(CONFIG, pool, "RTX 4090") is None
