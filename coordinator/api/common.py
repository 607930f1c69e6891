"""Helpers of every handler: the coordinator, capped bodies, signed writes, parameters."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import anyio
import msgspec
from dgpu.coordinator.auth import verify_request
from dgpu.coordinator.errors import ApiError, bad_request
from dgpu.coordinator.service import Coordinator
from dgpu.protocol.codec import decode_as
from dgpu.protocol.errors import DecodeError, MessageTooLarge
from dgpu.protocol.messages import Message
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

_DIGITS: Final = re.compile(r"[0-9]{1,19}")
# ASCII digits, one optional sign (not "--5"); 20 digits reach U64_MAX, the range check does
# the rest.
_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")
# A JSON-style decimal number: what OpenAPI clients send for `type: number`.
_NUMBER: Final = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,3})?")
# Query and path parameter alphabets, fullmatched here and stated as `pattern` in the OpenAPI
# document (the same text: ECMA-262 and Python agree on these character classes).
PRINTABLE: Final = re.compile(r"[ -~]*")  # printable ASCII
REGION: Final = re.compile(r"[a-z0-9-]*")
BASE58: Final = re.compile(r"[1-9A-HJ-NP-Za-km-z]*")
HEX32: Final = re.compile(r"[0-9a-fA-F]{32}")
MSGPACK_TYPES: Final = ("application/msgpack", "application/x-msgpack", "application/octet-stream")

M = TypeVar("M", bound=Message)


def coordinator(request: Request) -> Coordinator:
    state: Coordinator = request.app.state.coordinator
    return state


async def read_body(request: Request, cap: int, *, deadline_s: float) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``cap`` and
    with 408 when it has not arrived whole within ``deadline_s`` (a byte every few seconds
    must not hold a connection for ever). A client that goes away mid-body is a refusal
    (400, ``client_disconnected``), not a server failure."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared):
            raise bad_request("Content-Length is not a number")
        if int(declared) > cap:
            raise _too_large(cap)
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(deadline_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise _too_large(cap)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408, "body_timeout", f"the request body did not arrive within {deadline_s:g}s"
        ) from None
    except ClientDisconnect:
        raise bad_request(
            "the client went away before sending its body", "client_disconnected"
        ) from None
    return b"".join(chunks)


def _too_large(cap: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body exceeds {cap} bytes")


async def signed_body(request: Request, *, max_bytes: int | None = None) -> tuple[str, bytes]:
    """Read a capped body (``max_bytes``, default the configured cap) and check its
    signature headers; return (signer, body).

    The signer's rate limit is charged only once the signature verifies, so nobody can
    spend another key's allowance."""
    coord = coordinator(request)
    cap = coord.config.max_body_bytes if max_bytes is None else max_bytes
    body = await read_body(request, cap, deadline_s=coord.config.body_timeout_s)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    signer = await verify_request(
        request.headers,
        request.method,
        raw_path.decode("latin-1"),
        request.scope.get("query_string", b"").decode("latin-1"),
        body,
        now=coord.now(),
        window_s=coord.config.auth_window_s,
        guard=coord.guard,
    )
    await coord.key_limiter.take(signer, coord.clock())
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


def decode_message(kind: type[M], data: bytes, *, limit: int) -> M:
    """Canonical message bytes decoded as ``kind``: 413 past ``limit``, 400 when malformed."""
    try:
        return decode_as(kind, data, limit=limit)
    except MessageTooLarge as exc:
        raise ApiError(413, "message_too_large", str(exc)) from exc
    except DecodeError as exc:
        raise bad_request(str(exc), "invalid_message") from exc


def json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except RecursionError:  # deeply nested arrays/objects: the parser's stack, not ours
        raise bad_request("body is nested too deeply", "invalid_body") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"body is not JSON: {exc}", "invalid_body") from exc
    if not isinstance(doc, dict):
        raise bad_request("JSON body must be an object", "invalid_body")
    return doc


def int_param(
    params: Mapping[str, str], name: str, *, low: int, high: int, default: int | None = None
) -> int | None:
    """An integer parameter in ``[low, high]``; absent gives ``default``. Present but empty
    (``limit=``) is refused like any other non-integer: the OpenAPI document says integer."""
    value = params.get(name)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value):
        raise bad_request(f"parameter {name!r} must be an integer", "invalid_parameter")
    number = int(value)
    if not low <= number <= high:
        raise bad_request(f"parameter {name!r} must be in [{low}, {high}]", "invalid_parameter")
    return number


def float_param(params: Mapping[str, str], name: str, *, low: float, high: float) -> float | None:
    """A decimal number in ``[low, high]``. Python's ``float()`` alone would also take
    ``" 1"``, ``"1_0"``, ``"nan"`` and ``"inf"``, which no OpenAPI client sends as a number."""
    value = params.get(name)
    if value is None:
        return None
    if not _NUMBER.fullmatch(value):
        raise bad_request(f"parameter {name!r} must be a number", "invalid_parameter")
    number = float(value)
    if not low <= number <= high:
        raise bad_request(f"parameter {name!r} must be in [{low}, {high}]", "invalid_parameter")
    return number


def str_param(
    params: Mapping[str, str], name: str, *, pattern: re.Pattern[str] = PRINTABLE, max_len: int = 64
) -> str | None:
    """A string matching ``pattern`` (the one the OpenAPI document states); empty is absent."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_len or not pattern.fullmatch(value):
        raise bad_request(
            f"parameter {name!r} must be at most {max_len} characters of {pattern.pattern}",
            "invalid_parameter",
        )
    return value


def bool_param(params: Mapping[str, str], name: str) -> bool | None:
    """``true``, ``false`` or ``any`` (no filter), exactly the document's enum."""
    value = params.get(name)
    if value is None or value == "any":
        return None
    if value == "true":
        return True
    if value == "false":
        return False
    raise bad_request(f"parameter {name!r} must be true, false or any", "invalid_parameter")


def without_blanks(params: Mapping[str, str]) -> dict[str, str]:
    """An HTML form sends its empty fields (``?count=&region=``): for the explorer's forms
    they mean "no filter", while the API refuses an empty integer."""
    return {k: v for k, v in params.items() if v != ""}


class _JSON(JSONResponse):
    """JSON rendered by msgspec (compact UTF-8, like starlette's, at a fraction of the
    cost of ``json.dumps``: a search page of 50 offers is a few hundred values)."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content)


_ENCODER: Final = msgspec.json.Encoder()


def ok(data: Any, status: int = 200) -> JSONResponse:
    return _JSON(data, status_code=status)
