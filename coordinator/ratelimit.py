"""Token-bucket rate limits keyed by signer address or client address."""

from __future__ import annotations

import math
from typing import Protocol

from dgpu.coordinator.config import RateLimit
from dgpu.coordinator.errors import ApiError


class Limiter(Protocol):
    """Token buckets by key: :class:`RateLimiter` in memory (one process), or
    :class:`~dgpu.coordinator.replicas.DatabaseRateLimiter` (shared by the replicas)."""

    async def take(self, key: str, now: float) -> None:
        """Spend a token of ``key``'s bucket, or raise 429 (:class:`ApiError`)."""

    async def prune(self, now: float) -> int:
        """Forget buckets that have refilled; how many."""


class RateLimiter:
    """One bucket per key; a refused take answers 429 with a ``Retry-After`` in seconds.

    Buckets that have refilled completely are dropped when the table grows past
    ``max_keys``, so memory stays bounded under many distinct keys.
    """

    def __init__(self, limit: RateLimit, *, name: str, max_keys: int = 100_000) -> None:
        self._limit = limit
        self._name = name
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    async def take(self, key: str, now: float) -> None:
        tokens, at = self._buckets.get(key, (float(self._limit.burst), now))
        tokens = min(float(self._limit.burst), tokens + (now - at) * self._limit.per_second)
        if tokens < 1.0:
            wait = math.ceil((1.0 - tokens) / self._limit.per_second)
            self._buckets[key] = (tokens, now)
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for this {self._name}; retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self._max_keys:
            self._prune(now)

    async def prune(self, now: float) -> int:
        before = len(self._buckets)
        self._prune(now)
        return before - len(self._buckets)

    def _prune(self, now: float) -> None:
        full = float(self._limit.burst)
        rate = self._limit.per_second
        self._buckets = {
            key: (tokens, at)
            for key, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * rate < full
        }
