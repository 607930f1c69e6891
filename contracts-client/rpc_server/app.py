"""The JSON-RPC 2.0 envelope over HTTP: a starlette app around :data:`METHODS`.

Bodies are size-capped before parsing (413 beyond the cap), decoded strictly, and every
malformed request gets a JSON-RPC error object (parse error, invalid request, method
not found, invalid params) rather than a crash. Batches are bounded; notifications
(requests without ``id``) run but are not answered.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from dgpu.contracts_client.chain import SvmLedger
from dgpu.contracts_client.rpc_server import params as p
from dgpu.contracts_client.rpc_server.methods import METHODS
from dgpu.contracts_client.rpc_server.pubsub import PubSub
from dgpu.protocol.errors import DgpuError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 512 * 1024
MAX_BATCH = 100
_NO_ID = object()


class BodyTooLarge(DgpuError):
    """A request body over MAX_BODY_BYTES (answered with a JSON-RPC error, not read)."""


def _error(code: int, message: str, id_: Any = None, data: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": p.RpcFault(code, message, data).to_json(), "id": id_}


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


def _check_min_context_slot(ledger: SvmLedger, params: list[Any]) -> None:
    """``minContextSlot`` of any method's configuration object, checked in one place."""
    for value in params:
        if isinstance(value, dict) and value.get("minContextSlot") is not None:
            wanted = p.u64(value["minContextSlot"], "minContextSlot")
            slot = ledger.slot
            if wanted > slot:
                raise p.RpcFault(
                    p.MIN_CONTEXT_SLOT_NOT_REACHED,
                    "Minimum context slot has not been reached",
                    {"contextSlot": slot},
                )


def handle_one(ledger: SvmLedger, request: Any) -> dict[str, Any] | None:
    """Answer one request object; None for a notification."""
    if not isinstance(request, dict):
        return _error(p.INVALID_REQUEST, "Invalid request: not an object")
    id_ = request.get("id", _NO_ID)
    if id_ is not _NO_ID and not _valid_id(id_):
        return _error(p.INVALID_REQUEST, "Invalid request: id must be a string, integer or null")
    reply_id = None if id_ is _NO_ID else id_
    if request.get("jsonrpc") != "2.0":
        return _error(p.INVALID_REQUEST, 'Invalid request: jsonrpc must be "2.0"', reply_id)
    method = request.get("method")
    if not isinstance(method, str):
        return _error(p.INVALID_REQUEST, "Invalid request: method must be a string", reply_id)
    params = request.get("params", [])
    handler = METHODS.get(method)
    answer: dict[str, Any]
    if handler is None:
        answer = _error(p.METHOD_NOT_FOUND, "Method not found", reply_id)
    elif not isinstance(params, list):
        answer = _error(p.INVALID_PARAMS, "Invalid params: expected an array", reply_id)
    else:
        try:
            _check_min_context_slot(ledger, params)
            answer = {"jsonrpc": "2.0", "result": handler(ledger, params), "id": reply_id}
        except p.RpcFault as fault:
            answer = {"jsonrpc": "2.0", "error": fault.to_json(), "id": reply_id}
        except Exception:  # the handler boundary: a bug must not take the node down
            log.exception("JSON-RPC method %s failed", method)
            answer = _error(p.INTERNAL_ERROR, "Internal error", reply_id)
    return None if id_ is _NO_ID else answer


def handle_body(ledger: SvmLedger, body: bytes) -> Any:
    """The JSON answer to a whole HTTP body (None when only notifications were sent)."""
    try:
        decoded = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _error(p.PARSE_ERROR, "Parse error")
    if isinstance(decoded, list):
        if not decoded:
            return _error(p.INVALID_REQUEST, "Invalid request: empty batch")
        if len(decoded) > MAX_BATCH:
            return _error(p.INVALID_REQUEST, f"Invalid request: batch over {MAX_BATCH} requests")
        answers = [a for a in (handle_one(ledger, r) for r in decoded) if a is not None]
        return answers or None
    return handle_one(ledger, decoded)


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    ledger: SvmLedger, *, max_body: int = MAX_BODY_BYTES, pubsub: PubSub | None = None
) -> Starlette:
    """The local node's ASGI app: ``POST /`` for JSON-RPC, ``GET /health``, and a
    WebSocket upgrade on ``/`` for PubSub."""
    hub = PubSub(ledger) if pubsub is None else pubsub

    async def rpc(request: Request) -> Response:
        try:
            body = await _read_capped(request, max_body)
        except BodyTooLarge:
            error = _error(p.INVALID_REQUEST, f"Invalid request: body over {max_body} bytes")
            return JSONResponse(error, status_code=413)
        answer = handle_body(ledger, body)
        if answer is None:
            return Response(status_code=204)
        return JSONResponse(answer)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", rpc, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            WebSocketRoute("/", hub.endpoint),
        ]
    )
