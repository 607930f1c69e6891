"""Request signatures: every write to the coordinator is signed by the node's own key.

A signed request carries these headers::

    X-Dgpu-Address    base58 address (ed25519 public key) of the signer
    X-Dgpu-Timestamp  unix seconds, decimal
    X-Dgpu-Signature  base64 of the ed25519 signature
    X-Dgpu-Nonce      optional: 1 to 32 characters of [A-Za-z0-9_-], fresh per request

The signature is ``Identity.sign("http", payload)`` (domain tag ``dgpu/v1/http\\0``) over::

    payload = METHOD "\\n" RAW_PATH "\\n" RAW_QUERY "\\n" hex(sha256(body)) "\\n" TIMESTAMP
              [ "\\n" NONCE ]            (only when the nonce header is sent)

``RAW_PATH`` and ``RAW_QUERY`` are the percent-encoded path and query string exactly as
sent. The coordinator accepts a timestamp within ``window_s`` of its own clock and each
signature once: signatures seen within the window are remembered (:class:`ReplayGuard`).
ed25519 signatures are deterministic, so two identical requests in the same second have
the same signature; the nonce tells them apart (the client always sends one).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Final

from dgpu.coordinator.errors import ApiError, unauthorized
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.identity import Identity, public_key_of_address, verify

HEADER_ADDRESS: Final = "X-Dgpu-Address"
HEADER_TIMESTAMP: Final = "X-Dgpu-Timestamp"
HEADER_SIGNATURE: Final = "X-Dgpu-Signature"
HEADER_NONCE: Final = "X-Dgpu-Nonce"
AUTH_KIND: Final = "http"
_MAX_HEADER_LEN: Final = 128
_NONCE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def request_payload(
    method: str, raw_path: str, raw_query: str, body: bytes, timestamp: int, nonce: str = ""
) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    parts = [method.upper(), raw_path, raw_query, digest, str(timestamp)]
    if nonce:
        parts.append(nonce)
    return "\n".join(parts).encode()


def sign_request(
    identity: Identity,
    method: str,
    raw_path: str,
    body: bytes,
    *,
    timestamp: int,
    raw_query: str = "",
    nonce: str = "",
) -> dict[str, str]:
    """The auth headers of one request."""
    if nonce and not _NONCE.match(nonce):
        raise ValueError("a nonce is 1 to 32 characters of [A-Za-z0-9_-]")
    payload = request_payload(method, raw_path, raw_query, body, timestamp, nonce)
    headers = {
        HEADER_ADDRESS: identity.address,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: base64.b64encode(identity.sign(AUTH_KIND, payload)).decode(),
    }
    if nonce:
        headers[HEADER_NONCE] = nonce
    return headers


class ReplayGuard:
    """Remembers signatures until they fall out of the time window, refusing repeats."""

    def __init__(self, window_s: int, *, max_entries: int = 1_000_000) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._seen: dict[bytes, int] = {}
        self._next_prune = 0

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, signature: bytes, timestamp: int, now: int) -> None:
        if now >= self._next_prune:
            self._prune(now)
        if signature in self._seen:
            raise unauthorized("this signed request was already used", code="replayed")
        if len(self._seen) >= self._max_entries:
            raise ApiError(503, "busy", "too many signed requests in flight; retry shortly")
        self._seen[signature] = timestamp + self._window_s

    def _prune(self, now: int) -> None:
        self._seen = {sig: until for sig, until in self._seen.items() if until >= now}
        self._next_prune = now + max(1, self._window_s // 4)


@functools.lru_cache(maxsize=65_536)
def _public_key(address: str) -> bytes:
    return public_key_of_address(address)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise unauthorized(f"missing {name} header (signed request required)", code="unsigned")
    if len(value) > _MAX_HEADER_LEN:
        raise unauthorized(f"{name} header is too long", code="bad_auth_header")
    return value


def verify_request(
    headers: Mapping[str, str],
    method: str,
    raw_path: str,
    raw_query: str,
    body: bytes,
    *,
    now: int,
    window_s: int,
    guard: ReplayGuard,
) -> str:
    """Check a request's signature headers; return the signer's address."""
    address = _header(headers, HEADER_ADDRESS)
    stamp = _header(headers, HEADER_TIMESTAMP)
    sig_text = _header(headers, HEADER_SIGNATURE)
    nonce = headers.get(HEADER_NONCE, "")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise unauthorized(f"{HEADER_TIMESTAMP} must be unix seconds", code="bad_auth_header")
    if nonce and not _NONCE.match(nonce):
        raise unauthorized(f"{HEADER_NONCE} must be 1 to 32 of [A-Za-z0-9_-]", "bad_auth_header")
    timestamp = int(stamp)
    if abs(now - timestamp) > window_s:
        raise unauthorized(
            f"request dated {timestamp} is outside the {window_s}s window around {now}",
            code="stale_request",
        )
    try:
        public_key = _public_key(address)
    except SignatureError as exc:
        raise unauthorized(f"{HEADER_ADDRESS}: {exc}", code="bad_auth_header") from exc
    try:
        signature = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise unauthorized(f"{HEADER_SIGNATURE} is not base64", code="bad_auth_header") from exc
    payload = request_payload(method, raw_path, raw_query, body, timestamp, nonce)
    try:
        verify(public_key, AUTH_KIND, payload, signature)
    except SignatureError as exc:
        raise unauthorized(
            f"request signature does not verify: {exc}", code="bad_signature"
        ) from exc
    guard.check_and_remember(signature, timestamp, now)
    return address
