"""Offers: signed ingest (direct or relayed), live search."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from dgpu.coordinator.api.common import (
    BASE58,
    HEX32,
    REGION,
    bool_param,
    coordinator,
    float_param,
    int_param,
    message_bytes,
    ok,
    signed_body,
    str_param,
)
from dgpu.coordinator.errors import ApiError, bad_request, forbidden, not_found, unprocessable
from dgpu.coordinator.market import Market
from dgpu.coordinator.store import OfferAdmission, OfferQuery, offer_json
from dgpu.coordinator.store.offers import DEFAULT_SORT, SORTS
from dgpu.protocol.errors import (
    DecodeError,
    MessageTooLarge,
    OfferError,
    OfferExpired,
    OfferNotYetValid,
    SignatureError,
)
from dgpu.protocol.identity import address_of
from dgpu.protocol.messages import U64_MAX, Offer
from dgpu.protocol.offers import parse_offer
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_VRAM_MB: Final = 4 * 1024 * 1024


def parse_offer_body(data: bytes, now: int) -> Offer:
    """Decode and validate offer bytes, mapping each failure to its HTTP answer."""
    try:
        return parse_offer(data, now=now)
    except MessageTooLarge as exc:
        raise ApiError(413, "message_too_large", str(exc)) from exc
    except DecodeError as exc:
        raise bad_request(str(exc), "invalid_message") from exc
    except SignatureError as exc:
        raise unprocessable(f"offer signature: {exc}", "bad_offer_signature") from exc
    except OfferExpired as exc:
        raise unprocessable(str(exc), "offer_expired") from exc
    except OfferNotYetValid as exc:
        raise unprocessable(str(exc), "offer_not_yet_valid") from exc
    except OfferError as exc:
        raise unprocessable(str(exc), "invalid_offer") from exc


async def post_offer(request: Request) -> JSONResponse:
    coord = coordinator(request)
    signer, body = await signed_body(request)
    data = message_bytes(request, body, "offer")
    now = coord.now()
    offer = parse_offer_body(data, now)
    provider = address_of(offer.provider)
    if signer != provider and signer not in coord.config.relays:
        raise forbidden(
            "offers are posted by their provider (or a trusted relay)", "not_offer_provider"
        )
    if coord.config.mint is not None and address_of(offer.mint) != coord.config.mint:
        raise unprocessable(
            f"this coordinator indexes offers in mint {coord.config.mint}", "wrong_mint"
        )
    direct = signer == provider
    admission = OfferAdmission(
        coord.config.admission,
        # a trusted relay forwards many providers' offers from its one address
        client=coord.proxies.client_of(request.scope) if direct else None,
        probing=coord.admitter is not None,
    )
    status = await coord.store.offers.ingest(
        offer,
        data,
        model_key=coord.market.model_key(offer.gpu_model),
        source="direct" if direct else "relay",
        now=now,
        admission=admission,
    )
    coord.metrics.offers_ingested.labels(status).inc()
    if status in ("created", "refreshed"):
        await coord.market.touch(provider, now)
    admitted = admission.admitted
    if not admitted and coord.admitter is not None:
        coord.admitter.wake()
    return ok(
        {
            "status": status,
            "offer_id": offer.offer_id.hex(),
            "provider": provider,
            "expires_at": offer.expires_at,
            # pending: stored, served once the coordinator has reached the provider at the
            # offer's addresses and the provider proved its key there
            "admission": "admitted" if admitted else "pending",
        },
        status=201 if status == "created" else 200,
    )


def parse_offer_query(
    params: Mapping[str, str], market: Market, max_page: int, *, coord_now: int
) -> OfferQuery:
    """Search filters from query parameters (shared by the API and the explorer's form);
    ``verified=true`` keeps providers with a verified probe verdict since ``coord_now``
    minus the market's ``verified_window_s``."""
    model = str_param(params, "gpu_model")
    sort = params.get("sort", DEFAULT_SORT)
    if sort not in SORTS:
        raise bad_request(f"sort must be one of {', '.join(SORTS)}", "invalid_parameter")
    return OfferQuery(
        model_key=market.model_key(model) if model else None,
        count=int_param(params, "count", low=1, high=64),
        min_vram_mb=int_param(params, "min_vram_mb", low=0, high=MAX_VRAM_MB),
        max_price=int_param(params, "max_price", low=0, high=U64_MAX),
        region=str_param(params, "region", pattern=REGION, max_len=32),
        min_score_bps=_bps_or_none(float_param(params, "min_score", low=0.0, high=1.0)),
        simulated=bool_param(params, "simulated"),
        provider=str_param(params, "provider", pattern=BASE58, max_len=44),
        verified_since=(
            coord_now - market.verified_window_s if bool_param(params, "verified") else None
        ),
        sort=sort,
        limit=int_param(params, "limit", low=1, high=max_page, default=50) or 50,
        offset=int_param(params, "offset", low=0, high=1_000_000, default=0) or 0,
        # a provider's superseded offers stay signed and live until they expire; the API,
        # like the explorer, shows its current one only
        current_only=True,
    )


def _bps_or_none(value: float | None) -> int | None:
    return None if value is None else round(value * 10_000)


async def search_offers(request: Request) -> JSONResponse:
    coord = coordinator(request)
    now = coord.now()
    query = parse_offer_query(
        request.query_params, coord.market, coord.config.max_page, coord_now=now
    )
    total, rows = await coord.store.offers.search(query, now)
    return ok(
        {
            "total": total,
            "limit": query.limit,
            "offset": query.offset,
            "offers": [offer_json(row) for row in rows],
        }
    )


async def get_offer(request: Request) -> JSONResponse:
    coord = coordinator(request)
    text = request.path_params["offer_id"]
    # fullmatch first: bytes.fromhex alone also takes spaces between the digits
    if not HEX32.fullmatch(text):
        raise bad_request("offer_id must be 32 hex digits", "invalid_parameter")
    offer_id = bytes.fromhex(text)
    row = await coord.store.offers.get(offer_id)
    if row is None:
        raise not_found("no such offer")
    doc = offer_json(row)
    doc["live"] = row["expires_at"] > coord.now()
    return ok(doc)


async def offers_endpoint(request: Request) -> JSONResponse:
    # One route per path: with a route per method, starlette answers a third method with the
    # first route's 405 and `Allow: POST` alone, although GET works too.
    if request.method == "POST":
        return await post_offer(request)
    return await search_offers(request)


routes = [
    Route("/api/v1/offers", offers_endpoint, methods=["GET", "POST"]),
    Route("/api/v1/offers/{offer_id}", get_offer, methods=["GET"]),
]
