"""Prometheus metrics of one coordinator (its own registry, so several apps can coexist)."""

from __future__ import annotations

import time
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "dgpu_coordinator_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "dgpu_coordinator_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "dgpu_coordinator_rejections", "Requests refused, by error code", ["code"], registry=r
        )
        self.offers_ingested = Counter(
            "dgpu_coordinator_offers_ingested",
            "Offers accepted, by outcome",
            ["status"],
            registry=r,
        )
        self.receipts_ingested = Counter(
            "dgpu_coordinator_receipts_ingested",
            "Receipts accepted, by outcome",
            ["status"],
            registry=r,
        )
        self.offers_live = Gauge("dgpu_coordinator_offers_live", "Live offers", registry=r)
        self.providers_online = Gauge(
            "dgpu_coordinator_providers_online", "Providers with a live offer", registry=r
        )
        self.receipts_pending = Gauge(
            "dgpu_coordinator_receipts_pending",
            "Channels whose best receipt is above the on-chain paid mark",
            registry=r,
        )
        self.amount_pending = Gauge(
            "dgpu_coordinator_amount_pending", "Base units owed and not yet settled", registry=r
        )
        self.batches = Counter(
            "dgpu_coordinator_settlement_batches",
            "Settlement batches by outcome (confirmed, failed, reconciled)",
            ["outcome"],
            registry=r,
        )
        self.settled_amount = Counter(
            "dgpu_coordinator_settled_amount", "Base units settled by this coordinator", registry=r
        )
        self.settling = Gauge(
            "dgpu_coordinator_settling",
            "1 while this replica holds the settler lease (runs the settlement rounds)",
            registry=r,
        )
        self.settler_candidate = Gauge(
            "dgpu_coordinator_settler_candidate",
            "1 when this replica has a chain and competes for the settler lease (0: it never"
            " settles); with dgpu_coordinator_settling, 'no replica settles' is an alert",
            registry=r,
        )
        self.replica = Gauge(
            "dgpu_coordinator_replica",
            "Always 1, labelled with this replica's id (join on it with dgpu_coordinator_settling)",
            ["replica"],
            registry=r,
        )
        self.probes = Counter(
            "dgpu_coordinator_reachability_checks",
            "Reachability probes of providers by result (reachable, refused)",
            ["result"],
            registry=r,
        )
        self.failures = Counter(
            "dgpu_coordinator_failures",
            "Internal failures by kind (handler, settlement, snapshot)",
            ["kind"],
            registry=r,
        )


KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
"""Label values come from closed sets: a client inventing methods must not add series."""


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_of(scope)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
