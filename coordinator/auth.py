"""Verifying signed requests on the coordinator's side.

The signature scheme (headers, payload, signing) is :mod:`dgpu.protocol.http_auth`, shared
with the nodes that sign. Here: the replay guard (each signature accepted once within the
window) and the mapping of a refused signature to a 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from dgpu.coordinator.errors import ApiError, unauthorized
from dgpu.protocol.errors import RequestAuthError
from dgpu.protocol.http_auth import check_request_signature


class SignatureGuard(Protocol):
    """Accepts each request signature once within the time window (401 ``replayed``
    otherwise): :class:`ReplayGuard` in memory (one process), or
    :class:`~dgpu.coordinator.replicas.DatabaseReplayGuard` (every replica on PostgreSQL)."""

    async def check_and_remember(self, signature: bytes, timestamp: int, now: int) -> None: ...


class ReplayGuard:
    """Remembers signatures until they fall out of the time window, refusing repeats."""

    def __init__(self, window_s: int, *, max_entries: int = 1_000_000) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._seen: dict[bytes, int] = {}
        self._next_prune = 0

    def __len__(self) -> int:
        return len(self._seen)

    async def check_and_remember(self, signature: bytes, timestamp: int, now: int) -> None:
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


async def verify_request(
    headers: Mapping[str, str],
    method: str,
    raw_path: str,
    raw_query: str,
    body: bytes,
    *,
    now: int,
    window_s: int,
    guard: SignatureGuard,
) -> str:
    """Check a request's signature headers and that it is not a replay; the signer's address."""
    try:
        signed = check_request_signature(
            headers, method, raw_path, raw_query, body, now=now, window_s=window_s
        )
    except RequestAuthError as exc:
        raise unauthorized(str(exc), code=exc.code) from exc
    await guard.check_and_remember(signed.signature, signed.timestamp, now)
    return signed.address
