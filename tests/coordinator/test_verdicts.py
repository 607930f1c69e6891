"""Probe verdicts at the coordinator (real server, sqlite and PostgreSQL): who may post
one, how the latest recent one moves the score, and the ``verified`` search filter."""

from __future__ import annotations

import os

import httpx
import msgspec
import pytest
from dgpu.coordinator.scores import verification_factor
from dgpu.node.coordinator_client import CoordinatorClientError
from dgpu.node.renter import CoordinatorIndex, OfferQuery
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer, ProbeVerdict, VerdictKind
from dgpu.protocol.signing import sign

from tests.coordinator.conftest import Server, client_for, offer_for, receipt_for


def now_of(server: Server) -> int:
    return int(server.clock())


def verdict_for(
    renter: Identity, offer: Offer, job_id: bytes, kind: VerdictKind, *, at: int
) -> ProbeVerdict:
    verdict = ProbeVerdict(
        renter=renter.public_key,
        provider=offer.provider,
        offer_id=offer.offer_id,
        job_id=job_id,
        gpu_model=offer.gpu_model,
        verdict=kind,
        reasons=[f"test verdict: {kind}"],
        workload="matmul-fp16-4096" if kind == "verified" else "",
        measured_gflops=600_000 if kind == "verified" else 0,
        at=at,
    )
    return sign(verdict, renter)


async def probed_job(server: Server, provider: Identity, renter: Identity) -> bytes:
    """A job of ``renter`` on ``provider`` whose receipt the coordinator holds (as after
    a paid probe job)."""
    job_id = os.urandom(16)
    async with client_for(server, provider) as client:
        await client.post_receipt(
            receipt_for(renter, channel=os.urandom(32), cumulative=7, job_id=job_id)
        )
    return job_id


async def test_verified_filter_matches_only_the_verified_provider(server: Server) -> None:
    now = now_of(server)
    checked, unchecked = Identity.from_label("vd-checked"), Identity.from_label("vd-unchecked")
    renter = Identity.from_label("vd-renter")
    offers = {
        p.address: offer_for(p, now=now, model="H100", region="vd-filter", simulated=False)
        for p in (checked, unchecked)
    }
    for provider in (checked, unchecked):
        async with client_for(server, provider) as client:
            await client.post_offer(offers[provider.address])
    job = await probed_job(server, checked, renter)
    verdict = verdict_for(renter, offers[checked.address], job, "verified", at=now)
    async with client_for(server, renter) as client:
        before = await client.provider(checked.address)
        assert (await client.post_verdict(verdict))["status"] == "recorded"
        assert (await client.post_verdict(verdict))["status"] == "duplicate"
        every = await client.search_offers(region="vd-filter")
        verified = await client.search_offers(region="vd-filter", verified=True)
        after = await client.provider(checked.address)
        # the renter's side of `dgpu run --verified`: its index asks for verified offers only
        candidates = await CoordinatorIndex(client).search(
            OfferQuery(gpu_model="H100", region="vd-filter", verified=True)
        )
    assert [c.offer.provider for c in candidates] == [checked.public_key]
    assert {o.offer.provider for o in every.offers} == {checked.public_key, unchecked.public_key}
    assert [o.offer.provider for o in verified.offers] == [checked.public_key]
    assert (before["verification"], after["verification"]) == (None, "verified")
    assert after["score"] == pytest.approx(verification_factor(before["score"], "verified"), 1e-3)
    assert after["score"] > before["score"]
    assert [v["verdict"] for v in after["verdicts"]] == ["verified"]
    assert after["offers"][0]["verdict"] == "verified"
    assert server.count("probe_verdicts", "provider = ?", (checked.address,)) == 1


async def test_a_mismatch_halves_the_score_and_ends_verified(server: Server) -> None:
    now = now_of(server)
    provider, renter = Identity.from_label("vd-flagged"), Identity.from_label("vd-renter-2")
    offer = offer_for(provider, now=now, model="H100", region="vd-flag", simulated=False)
    async with client_for(server, provider) as client:
        await client.post_offer(offer)
    passed = await probed_job(server, provider, renter)
    flagged = await probed_job(server, provider, renter)
    async with client_for(server, renter) as client:
        await client.post_verdict(verdict_for(renter, offer, passed, "verified", at=now))
        assert len((await client.search_offers(region="vd-flag", verified=True)).offers) == 1
        plain = await client.provider(provider.address)
        await client.post_verdict(verdict_for(renter, offer, flagged, "mismatch", at=now))
        profile = await client.provider(provider.address)
        left = await client.search_offers(region="vd-flag", verified=True)
    assert profile["verification"] == "mismatch"  # a tie between a pass and a flag: the flag
    weighted = sum(profile["weights"][k] * profile["parts"][k] for k in profile["parts"])
    # (times the history weight: a key without a completed job scores a quarter)
    weighted *= profile["history_weight"]
    assert profile["score"] == pytest.approx(weighted * 0.5, abs=1e-3)
    assert profile["score"] < plain["score"]
    assert left.offers == []


async def test_verdicts_are_refused_in_words(server: Server) -> None:
    now = now_of(server)
    provider, renter = Identity.from_label("vd-refused-p"), Identity.from_label("vd-refused-r")
    stranger = Identity.from_label("vd-stranger")
    offer = offer_for(provider, now=now, model="H100", region="vd-refused", simulated=False)
    simulated = offer_for(provider, now=now, model="H100", region="vd-refused", simulated=True)
    async with client_for(server, provider) as client:
        await client.post_offer(offer)
        await client.post_offer(simulated)
    job = await probed_job(server, provider, renter)
    good = verdict_for(renter, offer, job, "verified", at=now)
    unpaid = verdict_for(renter, offer, os.urandom(16), "verified", at=now)
    cases: list[tuple[Identity, ProbeVerdict, int, str]] = [
        (stranger, good, 403, "not_verdict_renter"),
        (renter, unpaid, 409, "unknown_job"),
        (
            renter,
            verdict_for(renter, offer_for(provider, now=now), job, "verified", at=now),
            422,
            "unknown_offer",
        ),
        (renter, verdict_for(renter, offer, job, "verified", at=now - 3 * 86400), 422,
         "verdict_stale"),
        (renter, msgspec.structs.replace(good, verdict="mismatch"), 422, "bad_verdict_signature"),
        (provider, verdict_for(provider, offer, job, "verified", at=now), 403, "self_verdict"),
        (renter, verdict_for(renter, simulated, job, "verified", at=now), 422, "simulated_offer"),
    ]  # fmt: skip
    for signer, verdict, status, code in cases:
        async with client_for(server, signer) as client:
            with pytest.raises(CoordinatorClientError) as refused:
                await client.post_verdict(verdict)
        assert (refused.value.status, refused.value.code) == (status, code), refused.value
    assert server.count("probe_verdicts", "provider = ?", (provider.address,)) == 0


async def test_a_garbage_verdict_body_is_a_400(server: Server) -> None:
    renter = Identity.from_label("vd-garbage")
    async with client_for(server, renter) as client:
        with pytest.raises(CoordinatorClientError) as refused:
            await client._signed("POST", "/api/v1/verdicts", b"\x93\x01\x02", "application/msgpack")
    assert (refused.value.status, refused.value.code) == (400, "invalid_message")
    async with httpx.AsyncClient(base_url=server.url) as http:
        bad = await http.get("/api/v1/offers", params={"verified": "maybe"})
    assert bad.status_code == 400


def test_verification_factor_stays_in_range() -> None:
    for score in (0.0, 0.3, 1.0):
        for kind in ("verified", "mismatch", None, "simulated"):
            assert 0.0 <= verification_factor(score, kind) <= 1.0
    assert verification_factor(0.5, "verified") == pytest.approx(0.55)
    assert verification_factor(0.5, None) == 0.5
