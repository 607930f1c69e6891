"""Settlement batches (with transaction signatures) and on-demand rounds."""

from __future__ import annotations

import logging
from typing import Any

from dgpu.contracts_client.money import ChainUnavailable
from dgpu.coordinator.api.common import coordinator, int_param, ok, signed_body
from dgpu.coordinator.errors import ApiError, forbidden
from dgpu.coordinator.service import Coordinator
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger(__name__)


async def settlements_page(coord: Coordinator, limit: int, offset: int) -> dict[str, Any]:
    # Pending first: a round may close a batch between these reads, and a page must not
    # show no channel pending next to a batch still open (its channels were pending).
    pending, owed = await coord.store.channels.count_pending()
    total, batches = await coord.store.channels.batches(limit, offset)
    items = await coord.store.channels.batch_items(b["id"] for b in batches)
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "pending_channels": pending,
        "pending_amount": owed,
        "settled_total": await coord.store.channels.total_settled(),
        "batches": [
            {
                "id": b["id"],
                "created_at": b["created_at"],
                "state": b["state"],
                "signature": b["signature"],
                "error": b["error"],
                "finished_at": b["finished_at"],
                "channels": b["items"],
                "amount": b["amount"],
                "items": [
                    {
                        "channel": i["channel"],
                        "open_nonce": i["open_nonce"],
                        "provider": i["provider"],
                        "cumulative": i["cumulative"],
                        "settled_before": i["settled_before"],
                        "settled_after": i["settled_after"],
                    }
                    for i in items.get(b["id"], [])
                ],
            }
            for b in batches
        ],
    }


async def list_settlements(request: Request) -> JSONResponse:
    coord = coordinator(request)
    params = request.query_params
    limit = int_param(params, "limit", low=1, high=coord.config.max_page, default=20) or 20
    offset = int_param(params, "offset", low=0, high=1_000_000, default=0) or 0
    return ok(await settlements_page(coord, limit, offset))


async def run_settlement(request: Request) -> JSONResponse:
    coord = coordinator(request)
    signer, _ = await signed_body(request)
    if signer not in coord.config.admins:
        raise forbidden("only the coordinator's admins may start a settlement round", "not_admin")
    if coord.settler is None:
        raise ApiError(503, "no_chain", "this coordinator runs without a chain")
    if not coord.settling:
        holder = await coord.lease.current_holder()
        raise ApiError(
            409,
            "not_settler",
            f"replica {holder or '(none yet)'} runs the settlement rounds, not this one"
            f" ({coord.replica_id}); ask it, or retry once the lease moves",
        )
    try:
        report = await coord.settler.run_once()
    except ChainUnavailable as exc:
        coord.metrics.failures.labels("settlement").inc()
        raise ApiError(503, "chain_unavailable", f"settlement round failed: {exc}") from exc
    return ok(report.as_json())


routes = [
    Route("/api/v1/settlements", list_settlements, methods=["GET"]),
    Route("/api/v1/settlements/run", run_settlement, methods=["POST"]),
]
