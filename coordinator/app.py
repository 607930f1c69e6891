"""The ASGI app: routes, error rendering, per-client limits, and the lifespan that owns the
store and the background tasks (settlement timer, price snapshots, score refresh)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from dgpu.coordinator.api import market, offers, providers, receipts, settlements, system
from dgpu.coordinator.config import CoordinatorConfig
from dgpu.coordinator.errors import ApiError, ChannelConflict
from dgpu.coordinator.explorer import views as explorer
from dgpu.coordinator.market import Market
from dgpu.coordinator.metrics import Metrics, MetricsMiddleware
from dgpu.coordinator.service import Coordinator
from dgpu.coordinator.settlement import CoordinatorSettler, SettlementBackend
from dgpu.coordinator.store import open_store
from dgpu.pricing import DEFAULT_RATE_CARD, RateCard
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

OFFER_RETENTION_S = 24 * 3600
SNAPSHOT_RETENTION_S = 30 * 24 * 3600
# /metrics is for the operator's scraper, /static/ for cached assets; /healthz is rate-limited
# like the rest (it is public and unauthenticated).
_UNLIMITED_PREFIXES = ("/metrics", "/static/")


class _Holder:
    coordinator: Coordinator | None = None


class ClientLimitMiddleware:
    """Per-client-address token bucket on everything but metrics and static files."""

    def __init__(self, app: ASGIApp, holder: _Holder) -> None:
        self.app = app
        self.holder = holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        coord = self.holder.coordinator
        if scope["type"] == "http" and coord is not None:
            path: str = scope["path"]
            if not path.startswith(_UNLIMITED_PREFIXES):
                client = scope.get("client")
                try:
                    coord.ip_limiter.take(client[0] if client else "unknown", coord.clock())
                except ApiError as exc:
                    coord.metrics.rejections.labels(exc.code).inc()
                    await _error_response(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/healthz", "/metrics"))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    coord: Coordinator | None = getattr(request.app.state, "coordinator", None)
    if coord is not None:
        coord.metrics.rejections.labels(exc.code).inc()
    if _wants_html(request):
        return await explorer.error_page(request, exc)
    return _error_response(exc)


async def _domain_error(request: Request, exc: Exception) -> Response:
    """The one place domain refusals become HTTP answers."""
    assert isinstance(exc, ChannelConflict)
    return await _api_error(request, ApiError(409, exc.code, str(exc)))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return await _api_error(
        request, ApiError(exc.status_code, code, str(exc.detail), headers=exc.headers)
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    coord: Coordinator | None = getattr(request.app.state, "coordinator", None)
    if coord is not None:
        coord.metrics.failures.labels("handler").inc()
    return _error_response(ApiError(500, "internal", "internal error; it was logged"))


async def _every(
    interval: float, job: Callable[[], Awaitable[Any]], kind: str, metrics: Metrics
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception:  # a background task's boundary: log, count, keep going
            log.exception("background %s failed", kind)
            metrics.failures.labels(kind).inc()


def create_app(
    config: CoordinatorConfig,
    *,
    backend: SettlementBackend | None = None,
    card: RateCard = DEFAULT_RATE_CARD,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The coordinator app; the store opens (and the timers start) in its lifespan."""
    metrics = Metrics()
    holder = _Holder()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_store(config.db_path) as store:
            settler = (
                CoordinatorSettler(store, backend, metrics, clock=clock)
                if backend is not None
                else None
            )
            coord = Coordinator(
                config=config,
                store=store,
                market=Market(store, card, availability_window_s=config.availability_window_s),
                metrics=metrics,
                settler=settler,
                clock=clock,
            )
            if settler is not None:
                reconciled = await settler.reconcile()
                if reconciled:
                    log.warning("reconciled %d settlement batches left open", reconciled)
            await coord.market.snapshot(coord.now())
            app.state.coordinator = holder.coordinator = coord
            async with asyncio.TaskGroup() as tasks:
                jobs = [
                    tasks.create_task(
                        _every(
                            config.snapshot_every_s,
                            lambda: _housekeeping(coord),
                            "snapshot",
                            metrics,
                        )
                    )
                ]
                if settler is not None and config.settle_every_s > 0:
                    jobs.append(
                        tasks.create_task(
                            _every(config.settle_every_s, settler.run_once, "settlement", metrics)
                        )
                    )
                try:
                    yield
                finally:
                    holder.coordinator = None
                    for job in jobs:
                        job.cancel()

    return Starlette(
        routes=[
            *offers.routes,
            *receipts.routes,
            *market.routes,
            *providers.routes,
            *settlements.routes,
            *system.routes,
            *explorer.routes,
            Mount("/static", StaticFiles(packages=[("dgpu.coordinator", "static")]), name="static"),
        ],
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(ClientLimitMiddleware, holder=holder),
        ],
        exception_handlers={
            ApiError: _api_error,
            ChannelConflict: _domain_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )


async def _housekeeping(coord: Coordinator) -> None:
    now = coord.now()
    await coord.market.snapshot(now)
    await coord.market.rescore_all(now)
    await coord.store.offers.prune(now - OFFER_RETENTION_S)
    await coord.store.prices.prune(now - SNAPSHOT_RETENTION_S)
