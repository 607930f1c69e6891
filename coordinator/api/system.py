"""Health, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from dgpu.coordinator.api.common import coordinator, ok
from dgpu.coordinator.api.openapi import openapi_document
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def healthz(request: Request) -> JSONResponse:
    """Alive and reaching its database (503 ``database_unavailable`` otherwise); which
    replica this is, and which one runs the settlement rounds (``settler``: the holder of
    the settler lease, ``null`` when none holds it now). ``probing`` false: offers are served
    without checking that their provider can be reached and holds its key (``--no-probe``);
    ``pending_offers``: live offers waiting for that check."""
    coord = coordinator(request)
    offers = await coord.store.offers.count()
    return ok(
        {
            "status": "ok",
            "time": coord.now(),
            "offers": offers,
            "chain": coord.settler is not None,
            "database": coord.store.db.dialect.name,
            "replica": coord.replica_id,
            "settling": coord.settling,
            "settler": await coord.lease.current_holder() if coord.settler else None,
            "probing": coord.admitter is not None,
            "pending_offers": await coord.store.admission.pending(coord.now()),
        }
    )


async def metrics(request: Request) -> Response:
    coord = coordinator(request)
    now = coord.now()
    live = await coord.store.offers.live_summary(now)
    pending, owed = await coord.store.channels.count_pending()
    m = coord.metrics
    m.offers_live.set(live["offers"])
    m.providers_online.set(live["providers"])
    m.receipts_pending.set(pending)
    m.amount_pending.set(owed)
    m.settling.set(1 if coord.settling else 0)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> JSONResponse:
    return ok(openapi_document(coordinator(request).config.max_page))


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/api/v1/openapi.json", openapi, methods=["GET"]),
]
