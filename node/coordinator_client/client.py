"""A small HTTP client of the coordinator for nodes, relays and tools.

Works under trio and asyncio alike (``httpx.AsyncClient`` runs on anyio). Writes are signed
with the node's identity (see :mod:`dgpu.protocol.http_auth`); offers found through the index
are re-validated locally (signature, expiry) before they are returned::

    async with CoordinatorClient.open("http://127.0.0.1:8000", identity) as client:
        await client.post_offer(offer)
        found = await client.search_offers(gpu_model="RTX 4090", count=2, max_price=200_000)
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from dgpu.node.coordinator_client.errors import CoordinatorClientError
from dgpu.protocol.codec import encode
from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.http_auth import sign_request
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer, ProbeVerdict, Receipt
from dgpu.protocol.offers import parse_offer

log = logging.getLogger(__name__)
MSGPACK = "application/msgpack"
MAX_BATCH_RECEIPTS = 256
"""Receipts per batch request (the coordinator's limit)."""


@dataclass(frozen=True)
class IndexedOffer:
    """A verified offer from the index, with what the index knows about its provider."""

    offer: Offer
    provider_score: float
    source: str
    provider_proven: bool = False
    """The index has seen this provider complete a job (it ranks above new keys)."""


@dataclass(frozen=True)
class OfferSearch:
    total: int
    offers: list[IndexedOffer]
    rejected: int
    """Rows whose signed bytes did not validate here (dropped)."""


class CoordinatorClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        identity: Identity | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``http`` must have the coordinator's ``base_url``; ``identity`` signs writes."""
        self.http = http
        self.identity = identity
        self.clock = clock

    @classmethod
    @asynccontextmanager
    async def open(
        cls, base_url: str, identity: Identity | None = None, *, timeout_s: float = 10.0
    ) -> AsyncIterator[CoordinatorClient]:
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as http:
            yield cls(http, identity)

    # -- writes (signed) ----------------------------------------------------------

    async def post_offer(self, offer: Offer) -> dict[str, Any]:
        """Index a signed offer; ``status`` is created, refreshed, duplicate or stale."""
        return await self._signed("POST", "/api/v1/offers", encode(offer), MSGPACK)

    async def post_offer_bytes(self, data: bytes) -> dict[str, Any]:
        """Index offer bytes as received (a relay forwarding gossip)."""
        return await self._signed("POST", "/api/v1/offers", data, MSGPACK)

    async def post_receipt(self, receipt: Receipt) -> dict[str, Any]:
        """Hand in a renter-signed receipt for settlement (as the channel's provider)."""
        return await self._signed("POST", "/api/v1/receipts", encode(receipt), MSGPACK)

    async def post_receipts(self, receipts: Sequence[Receipt]) -> list[dict[str, Any]]:
        """Hand in many receipts in signed requests of at most :data:`MAX_BATCH_RECEIPTS`;
        one result per receipt, in order: ``{"status": "accepted", ...}`` or ``{"status":
        "refused", "code": ..., "message": ...}``."""
        results: list[dict[str, Any]] = []
        for start in range(0, len(receipts), MAX_BATCH_RECEIPTS):
            chunk = receipts[start : start + MAX_BATCH_RECEIPTS]
            body = msgspec.msgpack.encode([encode(r) for r in chunk])
            doc = await self._signed("POST", "/api/v1/receipts/batch", body, MSGPACK)
            answered = doc.get("results")
            if not isinstance(answered, list) or len(answered) != len(chunk):
                raise CoordinatorClientError("the coordinator's batch answer is malformed")
            results.extend(r if isinstance(r, dict) else {"status": "refused"} for r in answered)
        return results

    async def report_job(self, job_id: bytes, provider: str, outcome: str) -> dict[str, Any]:
        """Report a job's outcome: completed, provider_fault or renter_cancelled."""
        body = json.dumps({"job_id": job_id.hex(), "provider": provider, "outcome": outcome})
        return await self._signed("POST", "/api/v1/reports", body.encode(), "application/json")

    async def post_verdict(self, verdict: ProbeVerdict) -> dict[str, Any]:
        """Hand in a probe verdict (as the renter that signed it); 409 ``unknown_job``
        until the probe job's receipts have reached the coordinator."""
        return await self._signed("POST", "/api/v1/verdicts", encode(verdict), MSGPACK)

    async def run_settlement(self) -> dict[str, Any]:
        """Start a settlement round now (the identity must be one of the admins)."""
        return await self._signed("POST", "/api/v1/settlements/run", b"", "application/json")

    # -- reads ----------------------------------------------------------------------

    async def search_offers(
        self,
        *,
        gpu_model: str | None = None,
        count: int | None = None,
        min_vram_mb: int | None = None,
        max_price: int | None = None,
        region: str | None = None,
        min_score: float | None = None,
        simulated: bool | None = None,
        verified: bool = False,
        provider: str | None = None,
        sort: str = "rank",
        limit: int = 50,
        offset: int = 0,
    ) -> OfferSearch:
        params: dict[str, str] = {"sort": sort, "limit": str(limit), "offset": str(offset)}
        for name, value in (
            ("gpu_model", gpu_model),
            ("count", count),
            ("min_vram_mb", min_vram_mb),
            ("max_price", max_price),
            ("region", region),
            ("min_score", min_score),
            ("provider", provider),
        ):
            if value is not None:
                params[name] = str(value)
        if simulated is not None:
            params["simulated"] = "true" if simulated else "false"
        if verified:
            params["verified"] = "true"
        page = await self._get("/api/v1/offers", params)
        now = int(self.clock())
        found: list[IndexedOffer] = []
        rejected = 0
        for row in page["offers"]:
            try:
                offer = parse_offer(base64.b64decode(row["raw"]), now=now)
            except (ProtocolError, ValueError, KeyError) as exc:
                log.warning("index returned an offer that does not validate: %s", exc)
                rejected += 1
                continue
            found.append(
                IndexedOffer(
                    offer,
                    float(row["provider_score"]),
                    str(row["source"]),
                    bool(row.get("provider_proven", False)),
                )
            )
        return OfferSearch(total=int(page["total"]), offers=found, rejected=rejected)

    async def offer(self, offer_id: bytes) -> Offer:
        """One offer by id, validated here (signature, time window)."""
        doc = await self._get(f"/api/v1/offers/{offer_id.hex()}")
        try:
            return parse_offer(base64.b64decode(doc["raw"]), now=int(self.clock()))
        except (ProtocolError, ValueError, KeyError) as exc:
            raise CoordinatorClientError(f"offer {offer_id.hex()} is not usable: {exc}") from exc

    async def estimate(self, model: str, count: int, duration_s: int) -> dict[str, Any]:
        params = {"model": model, "count": str(count), "duration": str(duration_s)}
        return await self._get("/api/v1/estimate", params)

    async def prices(self) -> dict[str, Any]:
        return await self._get("/api/v1/prices")

    async def provider(self, address: str) -> dict[str, Any]:
        return await self._get(f"/api/v1/providers/{address}")

    async def channel(self, channel: str) -> dict[str, Any]:
        return await self._get(f"/api/v1/channels/{channel}")

    async def settlements(self, limit: int = 20, offset: int = 0) -> dict[str, Any]:
        return await self._get("/api/v1/settlements", {"limit": str(limit), "offset": str(offset)})

    async def health(self) -> dict[str, Any]:
        return await self._get("/healthz")

    # -- plumbing -------------------------------------------------------------------

    async def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self._send(self.http.build_request("GET", path, params=params))

    async def _signed(
        self, method: str, path: str, body: bytes, content_type: str
    ) -> dict[str, Any]:
        if self.identity is None:
            raise CoordinatorClientError("this client has no identity to sign writes with")
        request = self.http.build_request(
            method, path, content=body, headers={"Content-Type": content_type}
        )
        raw_path, _, raw_query = request.url.raw_path.partition(b"?")
        headers = sign_request(
            self.identity,
            method,
            raw_path.decode("ascii"),
            body,
            timestamp=int(self.clock()),
            raw_query=raw_query.decode("ascii"),
            nonce=secrets.token_hex(8),
        )
        request.headers.update(headers)
        return await self._send(request)

    async def _send(self, request: httpx.Request) -> dict[str, Any]:
        try:
            response = await self.http.send(request)
        except httpx.HTTPError as exc:
            raise CoordinatorClientError(f"coordinator unreachable: {exc!r}") from exc
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if response.is_success and isinstance(doc, dict):
            return doc
        error = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(error, dict):
            raise CoordinatorClientError(
                f"coordinator refused {request.method} {request.url.path}: "
                f"{error.get('message')} ({response.status_code} {error.get('code')})",
                status=response.status_code,
                code=str(error.get("code")),
            )
        raise CoordinatorClientError(
            f"coordinator answered {response.status_code} to {request.method} {request.url.path}",
            status=response.status_code,
        )
