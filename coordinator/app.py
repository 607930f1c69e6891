"""The ASGI app: routes, error rendering, per-client limits, and the lifespan that owns the
store and the background tasks (the settler lease and its rounds, price snapshots, score
refresh).

Several replicas may serve one PostgreSQL database; exactly one of them runs settlement
rounds at a time: the holder of the settler lease (:class:`~dgpu.coordinator.replicas.Lease`).
Every replica tries to take or renew it every third of its term; the one that gets it
reconciles the batches its predecessor left open (from the chain) before its first round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from dgpu.coordinator.admission import Admitter, Prober
from dgpu.coordinator.api import (
    market,
    offers,
    providers,
    receipts,
    settlements,
    system,
    verdicts,
)
from dgpu.coordinator.config import CoordinatorConfig
from dgpu.coordinator.errors import ApiError, ChannelConflict, StoreUnavailable
from dgpu.coordinator.explorer import views as explorer
from dgpu.coordinator.market import Market
from dgpu.coordinator.metrics import Metrics, MetricsMiddleware
from dgpu.coordinator.proxy import TrustedProxies
from dgpu.coordinator.service import Coordinator
from dgpu.coordinator.settlement import CoordinatorSettler, SettlementBackend
from dgpu.coordinator.store import open_store
from dgpu.coordinator.store.admission import KEY_WINDOW_S
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
    """Per-client-address token bucket on everything but metrics and static files (the
    client as the trusted proxies name it: :mod:`dgpu.coordinator.proxy`)."""

    def __init__(self, app: ASGIApp, holder: _Holder, proxies: TrustedProxies) -> None:
        self.app = app
        self.holder = holder
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        coord = self.holder.coordinator
        if scope["type"] == "http" and coord is not None:
            path: str = scope["path"]
            if not path.startswith(_UNLIMITED_PREFIXES):
                refusal: ApiError | None = None
                try:
                    await coord.ip_limiter.take(self.proxies.client_of(scope), coord.clock())
                except StoreUnavailable as exc:
                    refusal = _unavailable(exc)
                except ApiError as exc:
                    refusal = exc
                if refusal is not None:
                    coord.metrics.rejections.labels(refusal.code).inc()
                    await _error_response(refusal)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _unavailable(exc: StoreUnavailable) -> ApiError:
    log.warning("database unavailable: %s", exc)
    return ApiError(
        503,
        "database_unavailable",
        "the coordinator cannot reach its database right now; retry in a few seconds",
        headers={"Retry-After": "5"},
    )


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


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreUnavailable)
    return await _api_error(request, _unavailable(exc))


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
    prober: Prober | None = None,
) -> Starlette:
    """The coordinator app; the store opens (and the timers start) in its lifespan. With a
    ``prober``, offers are served only once their provider was reached and proved its key
    (:mod:`dgpu.coordinator.admission`)."""
    metrics = Metrics()
    holder = _Holder()
    proxies = TrustedProxies(config.trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_store(config.database) as store:
            settler = (
                CoordinatorSettler(store, backend, metrics, clock=clock)
                if backend is not None
                else None
            )
            coord = Coordinator(
                config=config,
                store=store,
                market=Market(
                    store,
                    card,
                    availability_window_s=config.availability_window_s,
                    verified_window_s=config.verified_window_s,
                ),
                metrics=metrics,
                settler=settler,
                clock=clock,
            )
            if prober is not None:
                coord.admitter = Admitter(store, prober, config.admission, metrics, now=coord.now)
            metrics.replica.labels(coord.replica_id).set(1)
            metrics.settler_candidate.set(1 if settler is not None else 0)
            if settler is not None:
                await _take_lease(coord, settler)
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
                if coord.admitter is not None:
                    jobs.append(tasks.create_task(coord.admitter.run()))
                if settler is not None:
                    jobs.append(tasks.create_task(_keep_lease(coord, settler)))
                    if config.settle_every_s > 0:
                        jobs.append(
                            tasks.create_task(
                                _every(
                                    config.settle_every_s,
                                    lambda: _settle_if_leader(coord, settler),
                                    "settlement",
                                    metrics,
                                )
                            )
                        )
                try:
                    yield
                finally:
                    holder.coordinator = None
                    for job in jobs:
                        job.cancel()
            if coord.settling:
                try:
                    await coord.lease.release()
                except StoreUnavailable:
                    log.warning("could not release the settler lease; it expires by itself")

    return Starlette(
        routes=[
            *offers.routes,
            *receipts.routes,
            *market.routes,
            *providers.routes,
            *settlements.routes,
            *system.routes,
            *verdicts.routes,
            *explorer.routes,
            Mount("/static", StaticFiles(packages=[("dgpu.coordinator", "static")]), name="static"),
        ],
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(ClientLimitMiddleware, holder=holder, proxies=proxies),
        ],
        exception_handlers={
            ApiError: _api_error,
            ChannelConflict: _domain_error,
            StoreUnavailable: _store_unavailable,
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
    await coord.store.admission.prune(now - KEY_WINDOW_S)
    await coord.ip_limiter.prune(coord.clock())
    await coord.key_limiter.prune(coord.clock())


async def _take_lease(coord: Coordinator, settler: CoordinatorSettler) -> None:
    """Try for the settler lease once; on taking it, reconcile what was left open."""
    try:
        held = await coord.lease.acquire()
    except StoreUnavailable as exc:
        log.warning("cannot renew the settler lease: %s", exc)
        held = False
    if held and not coord.settling:
        log.warning("replica %s now runs the settlement rounds", coord.replica_id)
        # Whatever the previous holder had in flight is closed from the chain's marks
        # before this replica packs a batch of its own: a receipt is never sent twice.
        reconciled = await settler.reconcile()
        if reconciled:
            log.warning("reconciled %d settlement batches left open", reconciled)
    elif not held and coord.settling:
        log.warning("replica %s no longer holds the settler lease", coord.replica_id)
    coord.settling = held
    coord.metrics.settling.set(1 if held else 0)


async def _keep_lease(coord: Coordinator, settler: CoordinatorSettler) -> None:
    """Renew (or try to take) the settler lease every third of its term."""
    while True:
        await asyncio.sleep(coord.config.settler_lease_s / 3)
        try:
            await _take_lease(coord, settler)
        except Exception:  # a background task's boundary: log, count, keep going
            log.exception("settler lease renewal failed")
            coord.metrics.failures.labels("lease").inc()
            coord.settling = False
            coord.metrics.settling.set(0)


async def _settle_if_leader(coord: Coordinator, settler: CoordinatorSettler) -> None:
    if coord.settling:
        await settler.run_once()
