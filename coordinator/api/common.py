"""Helpers of every handler: the coordinator, capped bodies, signed writes, parameters."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from dgpu.coordinator.auth import verify_request
from dgpu.coordinator.errors import ApiError, bad_request
from dgpu.coordinator.service import Coordinator
from starlette.requests import Request
from starlette.responses import JSONResponse

MSGPACK_TYPES: Final = ("application/msgpack", "application/x-msgpack", "application/octet-stream")


def coordinator(request: Request) -> Coordinator:
    state: Coordinator = request.app.state.coordinator
    return state


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``cap``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise bad_request("Content-Length is not a number")
        if int(declared) > cap:
            raise _too_large(cap)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise _too_large(cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(cap: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body exceeds {cap} bytes")


async def signed_body(request: Request) -> tuple[str, bytes]:
    """Read a capped body and check its signature headers; return (signer, body).

    The signer's rate limit is charged only once the signature verifies, so nobody can
    spend another key's allowance."""
    coord = coordinator(request)
    body = await read_body(request, coord.config.max_body_bytes)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    signer = verify_request(
        request.headers,
        request.method,
        raw_path.decode("latin-1"),
        request.scope.get("query_string", b"").decode("latin-1"),
        body,
        now=coord.now(),
        window_s=coord.config.auth_window_s,
        guard=coord.guard,
    )
    coord.key_limiter.take(signer, coord.clock())
    return signer, body


def message_bytes(request: Request, body: bytes, field: str) -> bytes:
    """A message from a body: raw MessagePack, or JSON ``{field: base64}``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in MSGPACK_TYPES:
        return body
    if kind == "application/json":
        doc = json_object(body)
        value = doc.get(field)
        if not isinstance(value, str):
            raise bad_request(f"JSON body needs {field!r}: base64 of the message", "invalid_body")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request(f"{field!r} is not valid base64", "invalid_body") from exc
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/msgpack (canonical message bytes) or application/json",
    )


def json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"body is not JSON: {exc}", "invalid_body") from exc
    if not isinstance(doc, dict):
        raise bad_request("JSON body must be an object", "invalid_body")
    return doc


def int_param(
    params: Mapping[str, str], name: str, *, low: int, high: int, default: int | None = None
) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 20:
        raise bad_request(f"parameter {name!r} must be an integer", "invalid_parameter")
    number = int(value)
    if not low <= number <= high:
        raise bad_request(f"parameter {name!r} must be in [{low}, {high}]", "invalid_parameter")
    return number


def float_param(params: Mapping[str, str], name: str, *, low: float, high: float) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise bad_request(f"parameter {name!r} must be a number", "invalid_parameter") from exc
    if not low <= number <= high:  # also refuses nan
        raise bad_request(f"parameter {name!r} must be in [{low}, {high}]", "invalid_parameter")
    return number


def str_param(params: Mapping[str, str], name: str, *, max_len: int = 64) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_len or not value.isprintable():
        raise bad_request(f"parameter {name!r} is too long or not printable", "invalid_parameter")
    return value


def bool_param(params: Mapping[str, str], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "" or value == "any":
        return None
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise bad_request(f"parameter {name!r} must be true or false", "invalid_parameter")


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)
