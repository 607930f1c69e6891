"""Probe verdicts: posted by the renter that ran (and paid for) the probe job."""

from __future__ import annotations

from typing import Final

from dgpu.coordinator.api.common import (
    coordinator,
    decode_message,
    message_bytes,
    ok,
    signed_body,
)
from dgpu.coordinator.errors import ApiError, forbidden, unprocessable
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.identity import address_of
from dgpu.protocol.messages import ProbeVerdict
from dgpu.protocol.signing import verify
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_VERDICT_BYTES: Final = 4096
MAX_VERDICT_AGE_S: Final = 24 * 3600
"""A verdict signed longer ago than this is refused (a probe is reported when it ends)."""
MAX_CLOCK_SKEW_S: Final = 60


def parse_verdict_body(data: bytes) -> ProbeVerdict:
    verdict = decode_message(ProbeVerdict, data, limit=MAX_VERDICT_BYTES)
    try:
        verify(verdict, verdict.renter)
    except SignatureError as exc:
        raise unprocessable(f"verdict signature: {exc}", "bad_verdict_signature") from exc
    return verdict


async def post_verdict(request: Request) -> JSONResponse:
    """Store a renter-signed probe verdict. Taken only from the renter it names, about an
    offer the index knows of that provider, for a probe job whose receipts link the two
    (409 ``unknown_job`` until the provider has handed them in: retry)."""
    coord = coordinator(request)
    signer, body = await signed_body(request)
    data = message_bytes(request, body, "verdict")
    verdict = parse_verdict_body(data)
    renter, provider = address_of(verdict.renter), address_of(verdict.provider)
    if signer != renter:
        raise forbidden("a verdict is posted by the renter that signed it", "not_verdict_renter")
    if renter == provider:
        raise forbidden("a provider cannot judge its own offers", "self_verdict")
    now = coord.now()
    if not now - MAX_VERDICT_AGE_S <= verdict.at <= now + MAX_CLOCK_SKEW_S:
        raise unprocessable(
            f"the verdict is dated {verdict.at}, more than a day from now ({now})", "verdict_stale"
        )
    offer = await coord.store.offers.get(verdict.offer_id)
    if offer is None or offer["provider"] != provider:
        raise unprocessable("the index knows no such offer of this provider", "unknown_offer")
    if offer["simulated"] and verdict.verdict == "verified":
        raise unprocessable("simulated GPUs can never pass a probe", "simulated_offer")
    if not await coord.store.verdicts.job_links(verdict.job_id, renter, provider):
        raise ApiError(
            409,
            "unknown_job",
            "no receipt of this job links this renter to this provider yet (the provider "
            "hands them in as the job ends): retry shortly",
        )
    created = await coord.store.verdicts.add(verdict, data, now)
    if created:
        await coord.market.score(provider, now)
    return ok(
        {
            "status": "recorded" if created else "duplicate",
            "job_id": verdict.job_id.hex(),
            "provider": provider,
            "verdict": verdict.verdict,
        },
        status=201 if created else 200,
    )


routes = [Route("/api/v1/verdicts", post_verdict, methods=["POST"])]
