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


def test_offer_terms_carry_what_each_backend_read() -> None:
    nvidia = [
        GpuInfo(i, f"GPU-{i:08x}-1111-2222-3333-444444444444", "H100", "NVIDIA H100 80GB HBM3",
                81559, 700, simulated=False, vendor="nvidia", driver_version="550.54.15")
        for i in range(2)
    ]  # fmt: skip
    terms = offer_terms(CONFIG, GpuPool(nvidia), "H100")
    assert terms is not None
    assert (terms.gpu_vendor, terms.gpu_name, terms.driver_version, terms.executor) == (
        "nvidia",
        "NVIDIA H100 80GB HBM3",
        "550.54.15",
        "docker",
    )
    assert terms.gpu_uuids == tuple(g.uuid for g in nvidia)
    assert terms.simulated is False
    # a held GPU leaves the offer, and its UUID with it
    pool = GpuPool(nvidia)
    pool.reserve(b"j" * 16, "H100", 1, until=10.0)
    held = offer_terms(CONFIG, pool, "H100")
    assert held is not None and held.gpu_uuids == (nvidia[1].uuid,)


def test_apple_offers_say_local_and_carry_no_uuid() -> None:
    mac = GpuInfo(0, "apple-gpu-0", "M2 Ultra", "Apple M2 Ultra (76-core GPU)", 196608, 295,
                  simulated=False, vendor="apple", driver_version="macOS 14.5, Metal 3",
                  board_uuid=False)  # fmt: skip
    terms = offer_terms(replace(CONFIG, executor="local"), GpuPool([mac]), "M2 Ultra")
    assert terms is not None
    assert (terms.gpu_vendor, terms.executor, terms.gpu_uuids) == ("apple", "local", ())


def test_simulated_gpus_stay_labelled_in_offers() -> None:
    from dgpu.node.gpu import SimulatedBackend, parse_gpu_spec

    backend = SimulatedBackend(parse_gpu_spec("2xMI300X"))
    terms = offer_terms(CONFIG, GpuPool(backend.list_gpus()), "MI300X")
    assert terms is not None
    assert terms.simulated is True
    assert (terms.gpu_vendor, terms.gpu_name, terms.driver_version) == (
        "amd",
        "Simulated MI300X",
        "simulated",
    )
    assert all(u.startswith("SIM-GPU-") for u in terms.gpu_uuids)


def test_a_uuid_outside_the_wire_bound_is_left_out() -> None:
    odd = GpuInfo(0, "GPU with spaces", "RTX 4090", "RTX 4090", 24564, 450, simulated=False)
    terms = offer_terms(CONFIG, GpuPool([odd]), "RTX 4090")
    assert terms is not None and terms.gpu_uuids == ()
