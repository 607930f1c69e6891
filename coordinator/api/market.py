"""Reference prices, their history, and cost estimates."""

from __future__ import annotations

from typing import Any

from dgpu.coordinator.api.common import coordinator, int_param, ok, str_param
from dgpu.coordinator.errors import bad_request, not_found
from dgpu.pricing import AmountError, ReferencePrice, UnknownModel, estimate_cost
from dgpu.pricing.cost import CostEstimate
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_HISTORY_S = 30 * 24 * 3600


def reference_json(ref: ReferencePrice) -> dict[str, Any]:
    market = ref.market
    return {
        "model": ref.model,
        "card_price_per_gpu_hour": ref.card_price_per_gpu_hour,
        "card_price_per_gpu_second": ref.card_price_per_gpu_second,
        "demand_gpus": ref.demand_gpus,
        "supply_gpus": ref.supply_gpus,
        "multiplier_bps": ref.multiplier_bps,
        "price_per_gpu_second": ref.price_per_gpu_second,
        "market": None
        if market is None
        else {
            "offers": market.offers,
            "gpus": market.gpus,
            "low": market.low,
            "p10": market.p10,
            "median": market.median,
            "p90": market.p90,
            "high": market.high,
        },
    }


async def get_prices(request: Request) -> JSONResponse:
    coord = coordinator(request)
    now = coord.now()
    refs = await coord.market.references(now)
    return ok(
        {
            "at": now,
            "unit": "base units per GPU-second (1 dGPU = 10^9)",
            "platform_fee_bps": coord.market.card.platform_fee_bps,
            "models": [reference_json(ref) for ref in refs.values()],
            "other_models": await coord.market.market_of_unknown_models(now),
        }
    )


async def get_price_history(request: Request) -> JSONResponse:
    coord = coordinator(request)
    params = request.query_params
    since_s = int_param(params, "since_s", low=1, high=MAX_HISTORY_S, default=24 * 3600) or 1
    model = str_param(params, "model")
    models = [coord.market.model_key(model)] if model else []
    rows = await coord.store.prices.history(coord.now() - since_s, models)
    return ok({"points": [dict(row) for row in rows]})


def estimate_json(estimate: CostEstimate) -> dict[str, Any]:
    return {
        "model": estimate.model,
        "gpu_count": estimate.gpu_count,
        "duration_seconds": estimate.duration_seconds,
        "price_per_gpu_second": estimate.price_per_gpu_second,
        "subtotal": estimate.subtotal,
        "fee_bps": estimate.fee_bps,
        "fee": estimate.fee,
        "provider_net": estimate.provider_net,
        "total": estimate.total,
        "deposit": estimate.deposit,
    }


async def get_estimate(request: Request) -> JSONResponse:
    coord = coordinator(request)
    params = request.query_params
    model = str_param(params, "model")
    if model is None:
        raise bad_request("parameter 'model' is required", "invalid_parameter")
    count = int_param(params, "count", low=1, high=64, default=1) or 1
    duration = int_param(params, "duration", low=1, high=30 * 24 * 3600)
    if duration is None:
        raise bad_request("parameter 'duration' (seconds) is required", "invalid_parameter")
    card = coord.market.card
    refs = await coord.market.references(coord.now())
    try:
        name = card.resolve_model(model)
    except UnknownModel as exc:
        raise not_found(str(exc)) from exc
    ref = refs[name]
    fee = card.platform_fee_bps
    try:
        reference = estimate_cost(name, count, duration, ref.price_per_gpu_second, fee)
        median = (
            estimate_cost(name, count, duration, ref.market.median, fee) if ref.market else None
        )
    except AmountError as exc:
        raise bad_request(str(exc), "invalid_parameter") from exc
    return ok(
        {
            "reference": estimate_json(reference),
            "market_median": None if median is None else estimate_json(median),
        }
    )


routes = [
    Route("/api/v1/prices", get_prices, methods=["GET"]),
    Route("/api/v1/prices/history", get_price_history, methods=["GET"]),
    Route("/api/v1/estimate", get_estimate, methods=["GET"]),
]
