"""Provider profiles and scores."""

from __future__ import annotations

from typing import Any

from dgpu.coordinator.api.common import coordinator, int_param, ok
from dgpu.coordinator.errors import bad_request, not_found
from dgpu.coordinator.service import Coordinator
from dgpu.coordinator.store import OfferQuery, offer_json, verdict_json
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.identity import public_key_of_address
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def provider_profile(
    coord: Coordinator, address: str, *, current_only: bool = False
) -> dict[str, Any] | None:
    """Everything the API and the explorer show about one provider (the explorer shows its
    current offer only, the API every live one)."""
    now = coord.now()
    parts = await coord.market.score(address, now)
    row = await coord.store.providers.get(address)
    if parts is None or row is None:
        return None
    _, offers = await coord.store.offers.search(
        OfferQuery(
            provider=address,
            limit=100,
            sort="newest",
            current_only=current_only,
            admitted_only=False,
        ),
        now,
    )
    totals = await coord.store.channels.provider_totals(address)
    channels = await coord.store.channels.for_provider(address)
    history = await coord.store.channels.provider_history(address)
    verdicts = await coord.store.verdicts.for_provider(address)
    per_offer = await coord.store.verdicts.for_offers(offers)
    return {
        "address": address,
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "online": bool(offers),
        **parts.as_json(),
        "reachability": await coord.store.admission.reachability_of(address),
        "totals": {
            "channels": totals["channels"],
            "jobs": totals["jobs"],
            "settled": totals["settled"],
            "owed": totals["owed"],
        },
        "offers": [
            {**offer_json(o), "verdict": per_offer.get(bytes(o["offer_id"]))} for o in offers
        ],
        "verdicts": [verdict_json(v) for v in verdicts],
        "channels": [
            {
                "channel": c["channel"],
                "open_nonce": c["open_nonce"],
                "renter": c["renter"],
                "job_id": bytes(c["job_id"]).hex(),
                "cumulative": c["cumulative"],
                "settled": c["settled"],
                "state": c["state"],
                "note": c["note"],
                "updated_at": c["updated_at"],
            }
            for c in channels
        ],
        "settlements": [
            {
                "batch": h["id"],
                "state": h["state"],
                "signature": h["signature"],
                "finished_at": h["finished_at"],
                "channel": h["channel"],
                "cumulative": h["cumulative"],
                "amount": max(0, (h["settled_after"] or h["settled_before"]) - h["settled_before"]),
            }
            for h in history
        ],
    }


async def get_provider(request: Request) -> JSONResponse:
    coord = coordinator(request)
    address = request.path_params["address"]
    try:
        public_key_of_address(address)
    except SignatureError as exc:
        raise bad_request(
            "address must be a base58 ed25519 public key", "invalid_parameter"
        ) from exc
    profile = await provider_profile(coord, address)
    if profile is None:
        raise not_found("no such provider")
    return ok(profile)


async def list_providers(request: Request) -> JSONResponse:
    coord = coordinator(request)
    params = request.query_params
    limit = int_param(params, "limit", low=1, high=coord.config.max_page, default=50) or 50
    offset = int_param(params, "offset", low=0, high=1_000_000, default=0) or 0
    total, rows = await coord.store.providers.listing(coord.now(), limit, offset)
    return ok(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "providers": [
                {
                    "address": r["address"],
                    "score": round(r["score"], 4),
                    "parts": {
                        "reliability": round(r["reliability"], 4),
                        "availability": round(r["availability"], 4),
                        "volume": round(r["volume"], 4),
                        "price_performance": round(r["price_performance"], 4),
                    },
                    "live_offers": r["live_offers"],
                    "live_gpus": r["live_gpus"],
                    "settled": r["settled"],
                    "first_seen": r["first_seen"],
                    "last_seen": r["last_seen"],
                }
                for r in rows
            ],
        }
    )


routes = [
    Route("/api/v1/providers", list_providers, methods=["GET"]),
    Route("/api/v1/providers/{address}", get_provider, methods=["GET"]),
]
