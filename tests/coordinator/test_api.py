"""The HTTP API against a real hypercorn server on a loopback port, driven from trio."""

from __future__ import annotations

import os

import httpx
import msgspec
import pytest
from dgpu.coordinator.market import REFERENCE_MAX_AGE_S
from dgpu.coordinator.scores import NEW_KEY_WEIGHT
from dgpu.node.coordinator_client import CoordinatorClientError
from dgpu.pricing import DEFAULT_RATE_CARD, estimate_cost
from dgpu.protocol.identity import Identity, address_of
from dgpu.protocol.offers import offer_bytes

from tests.coordinator.conftest import (
    ADMIN,
    RELAY,
    ManualClock,
    Server,
    client_for,
    offer_for,
    receipt_for,
)


def now_of(server: Server) -> int:
    return int(server.clock())


async def test_offer_ingest_is_idempotent_and_refreshes(server: Server) -> None:
    provider = Identity.from_label("api-idempotent")
    offer_id = os.urandom(16)
    first = offer_for(provider, now=now_of(server) - 10, offer_id=offer_id, region="idem")
    newer = offer_for(provider, now=now_of(server), offer_id=offer_id, region="idem", price=1)
    async with client_for(server, provider) as client:
        assert (await client.post_offer(first))["status"] == "created"
        assert (await client.post_offer(first))["status"] == "duplicate"
        assert (await client.post_offer(newer))["status"] == "refreshed"
        assert (await client.post_offer(first))["status"] == "stale"
        found = await client.search_offers(region="idem")
    assert server.count("offers", "offer_id = ?", (offer_id,)) == 1
    assert [o.offer.price_per_gpu_second for o in found.offers] == [1]
    assert found.offers[0].offer == newer


async def test_relay_and_direct_posts_are_deduplicated(server: Server) -> None:
    provider = Identity.from_label("api-relayed")
    stranger = Identity.from_label("api-stranger")
    offer = offer_for(provider, now=now_of(server), region="relayed")
    async with client_for(server, RELAY) as relay:
        result = await relay.post_offer_bytes(offer_bytes(offer))
    assert result["status"] == "created"
    async with client_for(server, provider) as direct:
        assert (await direct.post_offer(offer))["status"] == "duplicate"
        found = await direct.search_offers(region="relayed")
    assert [o.source for o in found.offers] == ["relay"]
    async with client_for(server, stranger) as other:
        with pytest.raises(CoordinatorClientError) as refused:
            await other.post_offer(offer_for(provider, now=now_of(server), region="relayed"))
    assert (refused.value.status, refused.value.code) == (403, "not_offer_provider")
    assert server.count("offers", "region = 'relayed'") == 1


async def test_search_filters_sort_and_pages(server: Server) -> None:
    now = now_of(server)
    # one offer per provider: a provider's older offers are superseded (see the next test)
    a, b, c, d = (Identity.from_label(f"api-search-{k}") for k in "abcd")
    region = "search"
    offers = [
        offer_for(a, now=now, region=region, model="RTX 4090", count=1, vram_mb=24_576, price=300),
        offer_for(b, now=now, region=region, model="RTX 4090", count=4, vram_mb=24_576, price=500),
        offer_for(c, now=now, region=region, model="A100 80GB", count=8, vram_mb=81_920, price=900),
        offer_for(
            d,
            now=now,
            region=region,
            model="H100",
            count=2,
            vram_mb=81_920,
            price=1200,
            simulated=False,
        ),
    ]
    for offer, signer in zip(offers, (a, b, c, d), strict=True):
        async with client_for(server, signer) as client:
            await client.post_offer(offer)
    async with client_for(server) as client:
        everything = await client.search_offers(region=region)
        assert everything.total == 4
        assert [o.offer.price_per_gpu_second for o in everything.offers] == [300, 500, 900, 1200]
        by_model = await client.search_offers(region=region, gpu_model="nvidia geforce rtx 4090")
        assert {o.offer.price_per_gpu_second for o in by_model.offers} == {300, 500}
        assert (await client.search_offers(region=region, count=3)).total == 2
        assert (await client.search_offers(region=region, min_vram_mb=80_000)).total == 2
        assert (await client.search_offers(region=region, max_price=500)).total == 2
        assert (await client.search_offers(region=region, simulated=False)).total == 1
        assert (await client.search_offers(region="nowhere")).total == 0
        desc = await client.search_offers(region=region, sort="-price")
        assert [o.offer.price_per_gpu_second for o in desc.offers] == [1200, 900, 500, 300]
        by_count = await client.search_offers(region=region, sort="count")
        assert [o.offer.gpu_count for o in by_count.offers] == [8, 4, 2, 1]
        pages = [await client.search_offers(region=region, limit=3, offset=k) for k in (0, 3)]
    assert [len(p.offers) for p in pages] == [3, 1]
    ids = {o.offer.offer_id for p in pages for o in p.offers}
    assert ids == {o.offer_id for o in offers}


async def test_search_and_reference_prices_count_a_providers_current_offer_only(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A provider re-signs its offer when its capacity changes; the one it replaced stays
    signed and live until it expires. Search and reference prices see the current one
    only, as the explorer does (issue 17: one provider showed two rows)."""
    from tests.coordinator.conftest import make_config, running_server

    clock = ManualClock()
    with running_server(make_config(tmp_path_factory.mktemp("current")), clock=clock) as srv:
        now = int(clock())
        moved, other = Identity.from_label("api-current-a"), Identity.from_label("api-current-b")
        model = "NVIDIA H100 80GB HBM3"
        old = offer_for(moved, now=now - 60, model=model, count=8, price=9_000_000, ttl_s=3600)
        new = offer_for(moved, now=now, model=model, count=2, price=2_000_000, ttl_s=600)
        theirs = offer_for(other, now=now, model=model, count=1, price=3_000_000, ttl_s=3600)
        for identity, offer in ((moved, old), (moved, new), (other, theirs)):
            async with client_for(srv, identity) as client:
                await client.post_offer(offer)
        clock.advance(REFERENCE_MAX_AGE_S + 1)  # past the reference prices' cache
        async with client_for(srv) as client:
            found = await client.search_offers(gpu_model=model)
            prices = await client.prices()
        async with httpx.AsyncClient(base_url=srv.url) as http:
            mine = (await http.get("/api/v1/offers", params={"provider": moved.address})).json()
        assert found.total == 2
        assert {o.offer.offer_id for o in found.offers} == {new.offer_id, theirs.offer_id}
        assert [o["offer_id"] for o in mine["offers"]] == [new.offer_id.hex()]
        h100 = next(m for m in prices["models"] if m["model"] == "H100")
        assert h100["supply_gpus"] == 3  # 2 + 1, not the superseded 8
        assert h100["market"]["offers"] == 2
        assert h100["market"]["high"] == 3_000_000  # the superseded 9,000,000 is gone
        # the replaced offer does not come back when the current one expires first
        clock.advance(600)
        async with httpx.AsyncClient(base_url=srv.url) as http:
            again = (await http.get("/api/v1/offers", params={"provider": moved.address})).json()
        assert again["total"] == 0


async def test_min_score_filter_uses_provider_scores(server: Server) -> None:
    provider = Identity.from_label("api-score")
    async with client_for(server, provider) as client:
        await client.post_offer(offer_for(provider, now=now_of(server), region="scored"))
        score = (await client.provider(provider.address))["score"]
        assert 0 < score < 1
        assert (await client.search_offers(region="scored", min_score=score - 0.01)).total == 1
        assert (
            await client.search_offers(region="scored", min_score=min(1.0, score + 0.01))
        ).total == 0


async def test_expired_offers_leave_the_search(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.coordinator.conftest import make_config, running_server

    clock = ManualClock()
    config = make_config(tmp_path_factory.mktemp("expiry"))
    with running_server(config, clock=clock) as srv:
        provider = Identity.from_label("api-expiry")
        async with client_for(srv, provider) as client:
            await client.post_offer(offer_for(provider, now=int(clock()), ttl_s=60))
            assert (await client.search_offers()).total == 1
            clock.advance(61)
            assert (await client.search_offers()).total == 0
            assert (await client.health())["offers"] == 1  # kept for the explorer a while


async def test_prices_and_estimate_follow_the_pricing_engine(server: Server) -> None:
    async with client_for(server) as client:
        prices = await client.prices()
        estimate = await client.estimate("NVIDIA H100 80GB HBM3", 2, 3600)
    h100 = next(m for m in prices["models"] if m["model"] == "H100")
    expected = estimate_cost("H100", 2, 3600, h100["price_per_gpu_second"])
    assert estimate["reference"]["total"] == expected.total
    assert estimate["reference"]["fee"] == expected.fee
    assert prices["platform_fee_bps"] == DEFAULT_RATE_CARD.platform_fee_bps
    assert {m["model"] for m in prices["models"]} == set(DEFAULT_RATE_CARD.model_names)
    async with httpx.AsyncClient(base_url=server.url) as http:
        unknown = await http.get("/api/v1/estimate", params={"model": "Voodoo 2", "duration": 5})
        missing = await http.get("/api/v1/estimate", params={"model": "H100"})
    assert unknown.status_code == 404
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "invalid_parameter"


async def test_receipts_keep_the_highest_per_channel(server: Server) -> None:
    provider, renter = Identity.from_label("api-rc-provider"), Identity.from_label("api-rc-renter")
    channel = os.urandom(32)
    async with client_for(server, provider) as client:
        first = await client.post_receipt(receipt_for(renter, channel=channel, cumulative=100))
        raised = await client.post_receipt(
            receipt_for(renter, channel=channel, cumulative=250, seq=2)
        )
        same = await client.post_receipt(
            receipt_for(renter, channel=channel, cumulative=250, seq=2)
        )
        lower = await client.post_receipt(
            receipt_for(renter, channel=channel, cumulative=200, seq=3)
        )
        status = await client.channel(raised["channel"])
    assert [r["status"] for r in (first, raised, same, lower)] == [
        "created",
        "raised",
        "duplicate",
        "stale",
    ]
    (opening,) = status["openings"]
    assert (opening["cumulative"], opening["settled"], opening["provider"]) == (
        250,
        0,
        provider.address,
    )
    assert opening["unsettled"] == 250


async def test_receipts_are_bound_to_their_first_provider(server: Server) -> None:
    provider, renter = Identity.from_label("api-rb-provider"), Identity.from_label("api-rb-renter")
    intruder = Identity.from_label("api-rb-intruder")
    channel = os.urandom(32)
    async with client_for(server, provider) as client:
        await client.post_receipt(receipt_for(renter, channel=channel, cumulative=10))
    async with client_for(server, intruder) as client:
        with pytest.raises(CoordinatorClientError) as conflict:
            await client.post_receipt(receipt_for(renter, channel=channel, cumulative=20))
    async with client_for(server, renter) as client:
        with pytest.raises(CoordinatorClientError) as own:
            await client.post_receipt(receipt_for(renter, channel=os.urandom(32), cumulative=20))
    assert (conflict.value.status, conflict.value.code) == (409, "channel_conflict")
    assert (own.value.status, own.value.code) == (403, "not_channel_provider")


async def test_a_batch_of_receipts_is_answered_receipt_by_receipt(server: Server) -> None:
    provider, renter = Identity.from_label("api-batch-provider"), Identity.from_label("api-b-r")
    other = Identity.from_label("api-batch-other")
    taken = os.urandom(32)
    async with client_for(server, other) as client:
        await client.post_receipt(receipt_for(renter, channel=taken, cumulative=5))
    fresh = [os.urandom(32) for _ in range(3)]
    good = [receipt_for(renter, channel=c, cumulative=100 + k) for k, c in enumerate(fresh)]
    forged = msgspec.structs.replace(good[0], cumulative=10**9)  # signature no longer covers it
    batch = [
        good[0],
        forged,
        good[1],
        receipt_for(renter, channel=taken, cumulative=50),  # stored for another provider
        good[2],
        good[2],  # the same again: accepted, a duplicate in the store
    ]
    async with client_for(server, provider) as client:
        results = await client.post_receipts(batch)
        again = await client.post_receipts([good[1]])
    assert [r["status"] for r in results] == [
        "accepted",
        "refused",
        "accepted",
        "refused",
        "accepted",
        "accepted",
    ]
    assert results[1]["code"] == "bad_receipt_signature"
    assert results[3]["code"] == "channel_conflict"
    assert [r.get("stored") for r in results if r["status"] == "accepted"] == [
        "created",
        "created",
        "created",
        "duplicate",
    ]
    assert again[0]["stored"] == "duplicate"
    for channel, receipt in zip(fresh, good, strict=True):
        stored = server.count(
            "channels",
            "channel = ? AND cumulative = ? AND provider = ?",
            (address_of(channel), receipt.cumulative, provider.address),
        )
        assert stored == 1
    assert server.count("channels", "channel = ?", (address_of(taken),)) == 1


@pytest.mark.parametrize(
    "body",
    [b"", b"\x90", b"garbage", msgspec.msgpack.encode([b"x"] * 257), msgspec.msgpack.encode(7)],
)
async def test_a_bad_batch_is_refused_whole(server: Server, body: bytes) -> None:
    from dgpu.protocol.http_auth import sign_request

    provider = Identity.from_label("api-batch-bad")
    headers = sign_request(
        provider, "POST", "/api/v1/receipts/batch", body, timestamp=int(server.clock())
    )
    headers["Content-Type"] = "application/msgpack"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        r = await http.post("/api/v1/receipts/batch", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_body"


async def test_job_reports_move_reliability(server: Server) -> None:
    provider, renter = (
        Identity.from_label("api-rep-provider"),
        Identity.from_label("api-rep-renter"),
    )
    jobs = [os.urandom(16) for _ in range(3)]
    async with client_for(server, provider) as client:
        for job in jobs:
            await client.post_receipt(
                receipt_for(renter, channel=os.urandom(32), cumulative=5, job_id=job)
            )
        before = (await client.provider(provider.address))["parts"]["reliability"]
        await client.report_job(jobs[0], provider.address, "completed")
    async with client_for(server, renter) as client:
        await client.report_job(jobs[1], provider.address, "provider_fault")
        await client.report_job(jobs[2], provider.address, "provider_fault")
        with pytest.raises(CoordinatorClientError) as unknown:
            await client.report_job(os.urandom(16), provider.address, "completed")
        profile = await client.provider(provider.address)
    assert before == 0.5
    assert profile["inputs"]["jobs_completed"] == 1
    assert profile["inputs"]["jobs_faulted"] == 2
    assert profile["parts"]["reliability"] == pytest.approx(2 / 5, abs=1e-4)
    assert unknown.value.status == 404


async def test_provider_profile_and_listing(server: Server) -> None:
    provider = Identity.from_label("api-profile")
    async with client_for(server, provider) as client:
        await client.post_offer(offer_for(provider, now=now_of(server), region="profile", count=3))
        profile = await client.provider(provider.address)
        missing = Identity.from_label("api-nobody").address
        with pytest.raises(CoordinatorClientError) as absent:
            await client.provider(missing)
    parts = profile["parts"]
    weights = profile["weights"]
    weighted = sum(weights[k] * parts[k] for k in parts)
    # no completed job yet: a new key's score is a quarter of its weighted parts
    assert profile["proven"] is False and profile["history_weight"] == NEW_KEY_WEIGHT
    assert profile["score"] == pytest.approx(weighted * NEW_KEY_WEIGHT, abs=1e-3)
    assert profile["online"] is True
    assert [o["gpu_count"] for o in profile["offers"]] == [3]
    assert absent.value.status == 404
    async with httpx.AsyncClient(base_url=server.url) as http:
        listing = (await http.get("/api/v1/providers", params={"limit": 200})).json()
    assert provider.address in {p["address"] for p in listing["providers"]}


async def test_settlement_run_needs_an_admin_and_a_chain(server: Server) -> None:
    async with client_for(server, Identity.from_label("api-not-admin")) as client:
        with pytest.raises(CoordinatorClientError) as not_admin:
            await client.run_settlement()
        page = await client.settlements()
    async with client_for(server, ADMIN) as client:
        with pytest.raises(CoordinatorClientError) as no_chain:
            await client.run_settlement()
    assert (not_admin.value.status, not_admin.value.code) == (403, "not_admin")
    assert (no_chain.value.status, no_chain.value.code) == (503, "no_chain")
    assert page["batches"] == [] and page["total"] == 0


async def test_health_metrics_and_openapi(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        health = await http.get("/healthz")
        metrics = await http.get("/metrics")
        spec = await http.get("/api/v1/openapi.json")
        missing = await http.get("/api/v1/nothing-here")
    assert health.json()["status"] == "ok"
    for name in (
        "dgpu_coordinator_requests_total",
        "dgpu_coordinator_request_seconds_bucket",
        "dgpu_coordinator_offers_live",
        "dgpu_coordinator_receipts_pending",
        "dgpu_coordinator_settlement_batches_total",
        "dgpu_coordinator_failures_total",
    ):
        assert name in metrics.text, name
    assert spec.json()["openapi"].startswith("3.")
    assert "/api/v1/offers" in spec.json()["paths"]
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_amounts_near_the_u64_range_never_break_a_page(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # D1: two receipts at 2**63-1 from self-made keys overflowed sqlite's sum(): /metrics,
    # settlements and the explorer answered 500 from then on, also after a restart.
    from dgpu.protocol.messages import U64_MAX as MAX_STORED_AMOUNT

    from tests.coordinator.conftest import make_config, running_server

    config = make_config(tmp_path_factory.mktemp("u64"))
    renter = Identity.from_label("u64-renter")
    providers = [Identity.from_label(f"u64-provider-{k}") for k in range(2)]
    pages = ["/metrics", "/api/v1/settlements", "/", "/settlements", "/providers"]
    pages += [f"/providers/{p.address}" for p in providers]
    for restart in range(2):
        with running_server(config) as server:
            if restart == 0:
                for provider in providers:
                    async with client_for(server, provider) as client:
                        await client.post_receipt(
                            receipt_for(
                                renter, channel=os.urandom(32), cumulative=MAX_STORED_AMOUNT
                            )
                        )
                async with client_for(server, providers[0]) as client:
                    with pytest.raises(CoordinatorClientError) as too_large:
                        await client.post_receipt(
                            receipt_for(
                                renter, channel=os.urandom(32), cumulative=MAX_STORED_AMOUNT + 1
                            )
                        )
                assert (too_large.value.status, too_large.value.code) == (400, "invalid_message")
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                for page in pages:
                    r = await http.get(page)
                    assert r.status_code == 200, (restart, page, r.text[:300])
                settlements = (await http.get("/api/v1/settlements")).json()
            assert settlements["pending_channels"] == 2
            assert settlements["pending_amount"] == 2 * MAX_STORED_AMOUNT
