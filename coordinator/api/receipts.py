"""Receipts from providers (renter-signed, provider-posted), channel status, job reports."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Final

import msgspec
from dgpu.coordinator.api.common import (
    coordinator,
    decode_message,
    json_object,
    message_bytes,
    ok,
    signed_body,
)
from dgpu.coordinator.errors import (
    ApiError,
    ChannelConflict,
    bad_request,
    forbidden,
    not_found,
    unprocessable,
)
from dgpu.coordinator.scores import OUTCOMES
from dgpu.coordinator.service import Coordinator
from dgpu.coordinator.settlement import IntakeRefused
from dgpu.coordinator.store import ChannelKey
from dgpu.protocol.errors import DecodeError, SignatureError
from dgpu.protocol.identity import address_of, public_key_of_address
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import verify_receipt
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_RECEIPT_BYTES: Final = 1024
MAX_BATCH_RECEIPTS: Final = 256
"""Receipts in one batch request: a provider with more sends several."""
_BATCH: Final = msgspec.msgpack.Decoder(
    Annotated[
        list[Annotated[bytes, msgspec.Meta(max_length=MAX_RECEIPT_BYTES)]],
        msgspec.Meta(min_length=1, max_length=MAX_BATCH_RECEIPTS),
    ]
)


def parse_receipt_body(data: bytes) -> Receipt:
    receipt = decode_message(Receipt, data, limit=MAX_RECEIPT_BYTES)
    try:
        verify_receipt(receipt)
    except (SignatureError, DecodeError) as exc:
        raise unprocessable(f"receipt signature: {exc}", "bad_receipt_signature") from exc
    return receipt


def _check_poster(coord: Coordinator, receipt: Receipt, signer: bytes) -> None:
    """What intake checks of every receipt before the chain: our program, and the renter is
    not the one posting (receipts are the provider's to hand in). ``signer``: its key."""
    wanted = coord.config.program_id
    if wanted is not None and address_of(receipt.program_id) != wanted:
        raise unprocessable(
            f"this coordinator settles channels of program {coord.config.program_id}",
            "wrong_program",
        )
    if receipt.renter == signer:
        raise forbidden("receipts are posted by the channel's provider", "not_channel_provider")


def _intake_error(exc: IntakeRefused) -> ApiError:
    # Someone else's channel is a matter of who may post (403); a chain that cannot be read
    # is ours (503, retry); the rest is a receipt the chain contradicts (422).
    http = {"not_channel_provider": 403, "chain_unavailable": 503}.get(exc.code, 422)
    headers = {"Retry-After": "30"} if http == 503 else None
    return ApiError(http, exc.code, exc.message, headers=headers)


def _result(receipt: Receipt, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "channel": address_of(receipt.channel),
        "open_nonce": receipt.open_nonce,
        "cumulative": receipt.cumulative,
    }


async def post_receipt(request: Request) -> JSONResponse:
    coord = coordinator(request)
    signer, body = await signed_body(request)
    data = message_bytes(request, body, "receipt")
    receipt = parse_receipt_body(data)
    _check_poster(coord, receipt, public_key_of_address(signer))
    if coord.settler is not None:
        try:
            await coord.settler.check_intake(
                receipt, signer, read_chain=coord.config.verify_channels_on_intake
            )
        except IntakeRefused as exc:
            raise _intake_error(exc) from exc
    now = coord.now()
    status = await coord.store.channels.ingest(receipt, data, provider=signer, now=now)
    coord.metrics.receipts_ingested.labels(status).inc()
    if status == "created":
        await coord.market.touch(signer, now)
    return ok(_result(receipt, status), status=201 if status == "created" else 200)


async def post_receipt_batch(request: Request) -> JSONResponse:
    """Many receipts of one provider in one signed request: a MessagePack array of the
    receipts' canonical bytes (at most ``MAX_BATCH_RECEIPTS``). Each is checked like a
    single receipt and answered in its place (``accepted`` with its store status, or
    ``refused`` with the error); the accepted ones are stored in one transaction. The
    request as a whole fails only for what concerns all of it (signature, size, shape, a
    chain that cannot be read)."""
    coord = coordinator(request)
    signer, body = await signed_body(request, max_bytes=MAX_BATCH_RECEIPTS * MAX_RECEIPT_BYTES + 16)
    try:
        items = _BATCH.decode(body)
    except msgspec.ValidationError as exc:
        raise bad_request(f"batch: {exc}", "invalid_body") from exc
    except msgspec.DecodeError as exc:
        raise bad_request(
            f"batch is not a MessagePack array of receipts: {exc}", "invalid_body"
        ) from exc
    signer_key = public_key_of_address(signer)
    results: list[dict[str, Any]] = [{} for _ in items]
    parsed: list[tuple[int, Receipt, bytes]] = []
    for index, data in enumerate(items):
        try:
            receipt = parse_receipt_body(data)
            _check_poster(coord, receipt, signer_key)
        except ApiError as exc:
            results[index] = {"status": "refused", **exc.body()["error"]}
            continue
        parsed.append((index, receipt, data))
    if coord.settler is not None and parsed:
        try:
            refusals = await coord.settler.check_intake_many(
                [r for _, r, _ in parsed], signer, read_chain=coord.config.verify_channels_on_intake
            )
        except IntakeRefused as exc:
            raise _intake_error(exc) from exc
        kept = []
        for (index, receipt, data), refusal in zip(parsed, refusals, strict=True):
            if refusal is None:
                kept.append((index, receipt, data))
            else:
                results[index] = {"status": "refused", **_intake_error(refusal).body()["error"]}
        parsed = kept
    now = coord.now()
    stored = await coord.store.channels.ingest_many(
        [(receipt, data) for _, receipt, data in parsed], provider=signer, now=now
    )
    counted: Counter[str] = Counter()
    for (index, receipt, _), status in zip(parsed, stored, strict=True):
        if isinstance(status, ChannelConflict):
            results[index] = {"status": "refused", "code": status.code, "message": str(status)}
            continue
        counted[status] += 1
        results[index] = {**_result(receipt, "accepted"), "stored": status}
    for outcome, count in counted.items():  # one metric update per outcome, not per receipt
        coord.metrics.receipts_ingested.labels(outcome).inc(count)
    if any(r.get("stored") == "created" for r in results):
        await coord.market.touch(signer, now)
    accepted = sum(r["status"] == "accepted" for r in results)
    return ok({"accepted": accepted, "refused": len(results) - accepted, "results": results})


async def get_channel(request: Request) -> JSONResponse:
    coord = coordinator(request)
    channel = request.path_params["channel"]
    try:
        public_key_of_address(channel)
    except SignatureError as exc:
        raise bad_request("channel must be a base58 address", "invalid_parameter") from exc
    rows = await coord.store.db.fetchall(
        "SELECT channel, open_nonce, program_id, provider, renter, job_id, seq, cumulative,"
        " settled, state, note, receipts, first_seen, updated_at FROM channels WHERE channel = ?"
        " ORDER BY open_nonce",
        (channel,),
    )
    if not rows:
        raise not_found("no receipt for this channel")
    openings = []
    for row in rows:
        doc = dict(row)
        doc["job_id"] = bytes(row["job_id"]).hex()
        doc["unsettled"] = max(0, row["cumulative"] - row["settled"])
        openings.append(doc)
    return ok({"channel": channel, "openings": openings})


async def post_report(request: Request) -> JSONResponse:
    """A job's outcome, by its renter or provider (input of the reliability score)."""
    coord = coordinator(request)
    signer, body = await signed_body(request)
    doc = json_object(body)
    job_text, provider, outcome = doc.get("job_id"), doc.get("provider"), doc.get("outcome")
    if not isinstance(job_text, str) or len(job_text) != 32:
        raise bad_request("job_id must be 32 hex digits", "invalid_body")
    try:
        job_id = bytes.fromhex(job_text)
    except ValueError as exc:
        raise bad_request("job_id must be 32 hex digits", "invalid_body") from exc
    if not isinstance(provider, str) or len(provider) > 44:
        raise bad_request("provider must be a base58 address", "invalid_body")
    if outcome not in OUTCOMES:
        raise bad_request(f"outcome must be one of {', '.join(OUTCOMES)}", "invalid_body")
    now = coord.now()
    known = await coord.store.providers.report(
        job_id=job_id, reporter=signer, provider=provider, outcome=outcome, now=now
    )
    if not known:
        raise not_found("no receipt links this job to this provider and reporter")
    await coord.market.touch(provider, now)
    return ok({"status": "recorded", "job_id": job_text, "outcome": outcome})


def channel_key(channel: bytes, open_nonce: int) -> ChannelKey:
    return ChannelKey(address_of(channel), open_nonce)


routes = [
    Route("/api/v1/receipts", post_receipt, methods=["POST"]),
    Route("/api/v1/receipts/batch", post_receipt_batch, methods=["POST"]),
    Route("/api/v1/channels/{channel}", get_channel, methods=["GET"]),
    Route("/api/v1/reports", post_report, methods=["POST"]),
]
