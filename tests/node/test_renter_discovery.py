"""Filtering and ranking offers (pure): every filter names itself, the order is fixed."""

from __future__ import annotations

import hashlib

import pytest
from dgpu.node.renter import Candidate, OfferQuery, exclusion, rank
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import OfferTerms, make_offer

NOW = 1_800_000_000
MINT = hashlib.sha256(b"mint").digest()


def offer(
    label: str,
    *,
    price: int = 100,
    count: int = 2,
    vram_mb: int = 24564,
    region: str = "eu",
    model: str = "RTX 4090",
    max_duration_s: int = 3600,
    mint: bytes = MINT,
    created: int = NOW,
    ttl: int = 300,
) -> Offer:
    terms = OfferTerms(
        gpu_model=model,
        gpu_count=count,
        vram_mb=vram_mb,
        price_per_gpu_second=price,
        mint=mint,
        region=region,
        max_duration_s=max_duration_s,
        simulated=True,
    )
    return make_offer(
        Identity.from_label(label), terms, multiaddrs=[], now=created, ttl_s=ttl,
        offer_id=hashlib.sha256(label.encode() + str(created).encode()).digest()[:16],
    )  # fmt: skip


QUERY = OfferQuery(
    gpu_model="NVIDIA GeForce RTX 4090",
    count=2,
    min_vram_mb=20_000,
    region="eu",
    max_price_per_gpu_second=150,
    duration_s=600,
    mint=MINT,
)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"model": "H100"}, "model"),
        ({"count": 1}, "gpu count"),
        ({"vram_mb": 16_000}, "vram"),
        ({"region": "us"}, "region"),
        ({"price": 151}, "price"),
        ({"max_duration_s": 599}, "duration"),
        ({"mint": bytes(32)}, "mint"),
        ({"created": NOW - 1000}, "validity"),
    ],
)
def test_each_filter_names_itself(changes: dict[str, object], reason: str) -> None:
    assert exclusion(offer("p", **changes), QUERY, now=NOW) == reason  # type: ignore[arg-type]


def test_a_matching_offer_passes_every_filter() -> None:
    assert exclusion(offer("p"), QUERY, now=NOW) is None


def test_cheapest_first_then_score_then_vram_and_one_per_provider() -> None:
    candidates = [
        Candidate(offer("a", price=120)),
        Candidate(offer("b", price=100), score=0.5),
        Candidate(offer("c", price=100), score=0.9),
        Candidate(offer("d", price=100, vram_mb=49_000), score=0.9),
        Candidate(offer("a", price=110, created=NOW - 10)),  # a's cheaper, older offer
        Candidate(offer("e", price=500)),  # too expensive
    ]
    found = rank(candidates, QUERY, now=NOW, source="test")
    order = [c.offer.provider for c in found.candidates]
    by = {label: Identity.from_label(label).public_key for label in "abcd"}
    assert order == [by["d"], by["c"], by["b"], by["a"]]
    assert found.candidates[-1].offer.price_per_gpu_second == 110
    assert found.excluded == {"price": 1}
    assert found.seen == 6


def test_why_none_explains() -> None:
    found = rank(
        [Candidate(offer("a", region="us"))], QUERY, now=NOW, source="peer-to-peer network"
    )
    assert found.candidates == []
    assert found.why_none() == (
        "1 offers found through the peer-to-peer network, none matches (1 by region)"
    )


def test_renters_filter_on_vendor_and_executor() -> None:
    mac = make_offer(
        Identity.from_label("mac"),
        OfferTerms("M2 Ultra", 1, 196608, 100, MINT, "eu", 3600, simulated=False,
                   gpu_vendor="apple", executor="local"),
        multiaddrs=[], now=NOW, ttl_s=300,
    )  # fmt: skip
    rocm = make_offer(
        Identity.from_label("rocm"),
        OfferTerms("M2 Ultra", 1, 196608, 100, MINT, "eu", 3600, simulated=False,
                   gpu_vendor="amd"),
        multiaddrs=[], now=NOW, ttl_s=300,
    )  # fmt: skip
    query = OfferQuery(gpu_model="Apple M2 Ultra", mint=MINT, duration_s=60)
    assert exclusion(mac, query, now=NOW) is None
    local = OfferQuery(gpu_model="M2 Ultra", executor="local")
    assert exclusion(mac, local, now=NOW) is None
    assert exclusion(rocm, local, now=NOW) == "executor"
    assert exclusion(mac, OfferQuery(gpu_model="M2 Ultra", executor="docker"), now=NOW) == (
        "executor"
    )
    assert exclusion(mac, OfferQuery(gpu_model="M2 Ultra", vendor="amd"), now=NOW) == "vendor"
    found = rank([Candidate(mac), Candidate(rocm)], local, now=NOW, source="p2p")
    assert found.offers == [mac]
    assert found.excluded == {"executor": 1}
