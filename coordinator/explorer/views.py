"""Explorer pages: overview, offers, providers, settlements, and "why no match"."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any, Final

from dgpu.coordinator.api.common import without_blanks
from dgpu.coordinator.api.offers import parse_offer_query
from dgpu.coordinator.api.providers import provider_profile
from dgpu.coordinator.api.settlements import settlements_page
from dgpu.coordinator.errors import ApiError, not_found
from dgpu.coordinator.explorer.charts import bar_chart, line_chart
from dgpu.coordinator.explorer.whynomatch import Candidate, explain
from dgpu.coordinator.scores import WEIGHTS
from dgpu.coordinator.service import Coordinator
from dgpu.coordinator.store import offer_json
from dgpu.coordinator.store.offers import SORTS, live_candidates
from dgpu.pricing import BASE_UNITS_PER_DGPU, SECONDS_PER_HOUR
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

CHART_WINDOW_S: Final = 24 * 3600
NO_VALUE: Final = "\u2013"  # an en dash


def dgpu_amount(amount: int | None, places: int = 4) -> str:
    """Base units as dGPU for display (Decimal, never float)."""
    if amount is None:
        return NO_VALUE
    value = Decimal(amount) / Decimal(BASE_UNITS_PER_DGPU)
    return f"{value:,.{places}f}"


def per_hour(price_per_gpu_second: int | None) -> str:
    if price_per_gpu_second is None:
        return NO_VALUE
    return dgpu_amount(price_per_gpu_second * SECONDS_PER_HOUR, 3)


def utc_text(value: int | None) -> str:
    """The one way the explorer writes a moment: UTC, to the second, the zone named."""
    if not value:
        return NO_VALUE
    return dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def timestamp(value: int | None) -> Markup | str:
    """A ``<time>`` element (machine-readable ISO 8601 beside the UTC text)."""
    if not value:
        return NO_VALUE
    iso = dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{}">{}</time>').format(iso, utc_text(value))


def hour_minute(value: int) -> str:
    return dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%H:%M")


def short(value: str, keep: int = 6) -> str:
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-keep:]}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("dgpu.coordinator", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters.update(
        dgpu=dgpu_amount, per_hour=per_hour, ts=timestamp, hm=hour_minute, short=short
    )
    return env


templates = Jinja2Templates(env=_environment())


def _coord(request: Request) -> Coordinator:
    coord: Coordinator = request.app.state.coordinator
    return coord


def _render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    coord = _coord(request)
    context.setdefault("site_name", coord.config.site_name)
    context.setdefault("now", coord.now())
    context.setdefault("refresh_s", coord.config.explorer_refresh_s)
    return templates.TemplateResponse(request, name, context, status_code=status)


async def error_page(request: Request, exc: ApiError) -> Response:
    site = getattr(request.app.state, "coordinator", None)
    context = {"error": exc, "site_name": site.config.site_name if site else "dgpu", "now": 0}
    return templates.TemplateResponse(
        request, "error.html", context, status_code=exc.status, headers=exc.headers
    )


RECENT_BATCHES: Final = 5


async def live_figures(coord: Coordinator) -> dict[str, Any]:
    """What the overview shows that changes while a person watches: the counters and the
    recent settlement batches, amounts both as integers and as the page writes them."""
    now = coord.now()
    live = await coord.store.offers.live_summary(now)
    settled = await coord.store.channels.total_settled()
    pending, owed = await coord.store.channels.count_pending()
    _, batches = await coord.store.channels.batches(RECENT_BATCHES, 0)
    return {
        "at": now,
        "providers_online": live["providers"],
        "gpus_on_offer": live["gpus"],
        "live_offers": live["offers"],
        "settled_total": settled,
        "settled_total_text": dgpu_amount(settled),
        "pending_channels": pending,
        "pending_amount": owed,
        "pending_amount_text": dgpu_amount(owed),
        "recent_batches": [
            {
                "id": b["id"],
                "state": b["state"],
                "channels": b["items"],
                "amount": b["amount"],
                "amount_text": dgpu_amount(b["amount"]),
                "signature": b["signature"],
                "signature_text": short(b["signature"], 8) if b["signature"] else NO_VALUE,
            }
            for b in batches
        ],
    }


async def overview_json(request: Request) -> JSONResponse:
    """The overview's live figures, polled by its script (small: no offers, no charts)."""
    return JSONResponse(await live_figures(_coord(request)))


async def overview(request: Request) -> Response:
    coord = _coord(request)
    now = coord.now()
    live = await coord.store.offers.live_summary(now)
    by_model = await coord.store.offers.gpus_by_model(now)
    refs = await coord.market.references(now)
    history = await coord.store.prices.history(now - CHART_WINDOW_S)
    offered = {r["model_key"] for r in by_model}
    shown = [m for m in refs if m in offered] or list(refs)
    series: dict[str, list[tuple[int, int]]] = {m: [] for m in shown}
    for row in history:
        if row["model"] in series:
            series[row["model"]].append((row["at"], row["reference"]))
    _, batches = await coord.store.channels.batches(RECENT_BATCHES, 0)
    _, top = await coord.store.providers.listing(now, 5, 0)
    pending, owed = await coord.store.channels.count_pending()
    return _render(
        request,
        "overview.html",
        live=live,
        bars=bar_chart(
            [(r["model_key"], r["gpus"], r["simulated_gpus"] or 0) for r in by_model], width=300
        ),
        by_model=by_model,
        chart=line_chart(series),
        refs=list(refs.values()),
        settled=await coord.store.channels.total_settled(),
        pending=pending,
        owed=owed,
        batches=batches,
        top=top,
    )


async def offers_page(request: Request) -> Response:
    coord = _coord(request)
    now = coord.now()
    params = without_blanks(request.query_params)
    query = replace(
        parse_offer_query(params, coord.market, coord.config.max_page, coord_now=now),
        current_only=True,
    )
    total, rows = await coord.store.offers.search(query, now)
    verdicts = await coord.store.verdicts.for_offers(rows)
    return _render(
        request,
        "offers.html",
        offers=[{**offer_json(r), "verdict": verdicts.get(bytes(r["offer_id"]))} for r in rows],
        total=total,
        query=query,
        params=params,
        models=await coord.store.offers.distinct("model_key", now),
        regions=await coord.store.offers.distinct("region", now),
        sorts=list(SORTS),
        next_offset=query.offset + query.limit if query.offset + query.limit < total else None,
        prev_offset=max(0, query.offset - query.limit) if query.offset else None,
    )


async def why_page(request: Request) -> Response:
    coord = _coord(request)
    now = coord.now()
    params = without_blanks(request.query_params)
    query = parse_offer_query(params, coord.market, coord.config.max_page, coord_now=now)
    rows = await live_candidates(coord.store.db, now)
    candidates = [
        Candidate(
            r["model_key"],
            r["gpu_count"],
            r["vram_mb"],
            r["price_per_gpu_second"],
            r["region"],
            r["score"] / 10_000,
            bool(r["simulated"]),
        )
        for r in rows
    ]
    asked = any(v for k, v in params.items() if k not in ("sort", "limit", "offset"))
    return _render(
        request,
        "why.html",
        explanation=explain(candidates, query) if asked else None,
        params=params,
        models=await coord.store.offers.distinct("model_key", now),
        regions=await coord.store.offers.distinct("region", now),
    )


async def provider_page(request: Request) -> Response:
    coord = _coord(request)
    address = request.path_params["address"]
    profile = (
        await provider_profile(coord, address, current_only=True) if len(address) <= 44 else None
    )
    if profile is None:
        raise not_found("no such provider")
    return _render(request, "provider.html", p=profile, weights=WEIGHTS)


async def providers_page(request: Request) -> Response:
    coord = _coord(request)
    total, rows = await coord.store.providers.listing(coord.now(), 200, 0)
    verdicts = await coord.store.verdicts.latest_per_provider([r["address"] for r in rows])
    return _render(request, "providers.html", total=total, providers=rows, verdicts=verdicts)


async def settlements_view(request: Request) -> Response:
    coord = _coord(request)
    page = await settlements_page(coord, 50, 0)
    return _render(request, "settlements.html", page=page)


routes = [
    Route("/", overview, methods=["GET"]),
    Route("/api/v1/overview", overview_json, methods=["GET"]),
    Route("/offers", offers_page, methods=["GET"]),
    Route("/why", why_page, methods=["GET"]),
    Route("/providers", providers_page, methods=["GET"]),
    Route("/providers/{address}", provider_page, methods=["GET"]),
    Route("/settlements", settlements_view, methods=["GET"]),
]
