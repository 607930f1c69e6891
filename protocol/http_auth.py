"""Signed HTTP requests: every write to the coordinator is signed by the node's own key.

Both sides import this module: nodes and relays sign, the coordinator verifies. A signed
request carries these headers::

    X-Dgpu-Address    base58 address (ed25519 public key) of the signer
    X-Dgpu-Timestamp  unix seconds, decimal
    X-Dgpu-Signature  base64 of the ed25519 signature
    X-Dgpu-Nonce      optional: 1 to 32 characters of [A-Za-z0-9_-], fresh per request

The signature is ``Identity.sign("http", payload)`` (domain tag ``dgpu/v1/http\\0``) over::

    payload = METHOD "\\n" RAW_PATH "\\n" RAW_QUERY "\\n" hex(sha256(body)) "\\n" TIMESTAMP
              [ "\\n" NONCE ]            (only when the nonce header is sent)

``RAW_PATH`` and ``RAW_QUERY`` are the percent-encoded path and query string exactly as
sent. A verifier accepts a timestamp within its window and remembers signatures within it
(replays are the verifier's business: see the coordinator's ``ReplayGuard``). ed25519
signatures are deterministic, so two identical requests in the same second have the same
signature; the nonce tells them apart (the client always sends one).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from dgpu.protocol.errors import RequestAuthError, SignatureError
from dgpu.protocol.identity import Identity, public_key_of_address, verify

HEADER_ADDRESS: Final = "X-Dgpu-Address"
HEADER_TIMESTAMP: Final = "X-Dgpu-Timestamp"
HEADER_SIGNATURE: Final = "X-Dgpu-Signature"
HEADER_NONCE: Final = "X-Dgpu-Nonce"
AUTH_KIND: Final = "http"
_MAX_HEADER_LEN: Final = 128
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class SignedRequest:
    """Who signed a request that verified, and the signature (for replay checks)."""

    address: str
    timestamp: int
    signature: bytes


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
    if nonce and not _NONCE.fullmatch(nonce):
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


@functools.lru_cache(maxsize=65_536)
def _public_key(address: str) -> bytes:
    return public_key_of_address(address)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise RequestAuthError(f"missing {name} header (signed request required)", "unsigned")
    if len(value) > _MAX_HEADER_LEN:
        raise RequestAuthError(f"{name} header is too long", "bad_auth_header")
    return value


def check_request_signature(
    headers: Mapping[str, str],
    method: str,
    raw_path: str,
    raw_query: str,
    body: bytes,
    *,
    now: int,
    window_s: int,
) -> SignedRequest:
    """Check a request's signature headers (not replays); :class:`RequestAuthError` if bad."""
    address = _header(headers, HEADER_ADDRESS)
    stamp = _header(headers, HEADER_TIMESTAMP)
    sig_text = _header(headers, HEADER_SIGNATURE)
    nonce = headers.get(HEADER_NONCE, "")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise RequestAuthError(f"{HEADER_TIMESTAMP} must be unix seconds", "bad_auth_header")
    if nonce and not _NONCE.fullmatch(nonce):
        raise RequestAuthError(
            f"{HEADER_NONCE} must be 1 to 32 of [A-Za-z0-9_-]", "bad_auth_header"
        )
    timestamp = int(stamp)
    if abs(now - timestamp) > window_s:
        raise RequestAuthError(
            f"request dated {timestamp} is outside the {window_s}s window around {now}",
            "stale_request",
        )
    try:
        public_key = _public_key(address)
    except SignatureError as exc:
        raise RequestAuthError(f"{HEADER_ADDRESS}: {exc}", "bad_auth_header") from exc
    try:
        signature = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestAuthError(f"{HEADER_SIGNATURE} is not base64", "bad_auth_header") from exc
    payload = request_payload(method, raw_path, raw_query, body, timestamp, nonce)
    try:
        verify(public_key, AUTH_KIND, payload, signature)
    except SignatureError as exc:
        raise RequestAuthError(
            f"request signature does not verify: {exc}", "bad_signature"
        ) from exc
    return SignedRequest(address=address, timestamp=timestamp, signature=signature)
