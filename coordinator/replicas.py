"""What several coordinator replicas on one database share: the replay guard, the rate
limits and the settler lease, each kept in the database (migration ``0004_replicas``).

On sqlite (one process) the replay guard and the rate limits stay in memory
(:class:`~dgpu.coordinator.auth.ReplayGuard`, :class:`~dgpu.coordinator.ratelimit.RateLimiter`);
on PostgreSQL every replica asks the database, so a signed request is accepted once by the
whole fleet and a client's allowance is one allowance, whichever replica it reaches.

The settler lease (:class:`Lease`) is a row with an expiry on the *database's* clock (one
clock for every replica): its holder renews it every third of its term; when the holder
dies, the row expires and the next replica to ask takes it over. A replica that cannot
reach the database stops counting itself as the holder at once, so two replicas never
both believe they settle for longer than the round in flight (and even then the escrow
pays each receipt once: it pays only above a channel's on-chain high-water mark).
"""

from __future__ import annotations

import math
from typing import Final

from dgpu.coordinator.config import RateLimit
from dgpu.coordinator.db import Database
from dgpu.coordinator.errors import ApiError, unauthorized

SETTLER_LEASE: Final = "settler"


class DatabaseReplayGuard:
    """Each signature accepted once across every replica; entries leave with the window."""

    def __init__(self, db: Database, window_s: int) -> None:
        self._db = db
        self._window_s = window_s
        self._next_prune = 0

    async def check_and_remember(self, signature: bytes, timestamp: int, now: int) -> None:
        if now >= self._next_prune:
            self._next_prune = now + max(1, self._window_s // 4)
            await self._db.execute("DELETE FROM seen_signatures WHERE expires_at < ?", (now,))
        inserted = await self._db.execute(
            "INSERT INTO seen_signatures (signature, expires_at) VALUES (?, ?)"
            " ON CONFLICT (signature) DO NOTHING",
            (signature, timestamp + self._window_s),
        )
        if inserted == 0:
            raise unauthorized("this signed request was already used", code="replayed")


class DatabaseRateLimiter:
    """A token bucket per key in ``rate_buckets``, taken in one atomic upsert (the update
    reads the row it replaces, so replicas taking at once cannot both spend one token)."""

    def __init__(self, db: Database, limit: RateLimit, *, name: str) -> None:
        self._db = db
        self._limit = limit
        self._name = name
        least = "min" if db.dialect.name == "sqlite" else "least"
        greatest = db.dialect.greatest
        # A refused take stores -1 - tokens (always negative) so that RETURNING tells the
        # two outcomes apart; `stored` reads either form back as the tokens left.
        stored = (
            "(CASE WHEN rate_buckets.tokens < 0 THEN -1.0 - rate_buckets.tokens"
            " ELSE rate_buckets.tokens END)"
        )
        refill = (
            f"{least}(CAST(? AS DOUBLE PRECISION), {stored}"
            f" + {greatest}(excluded.at - rate_buckets.at, 0.0) * CAST(? AS DOUBLE PRECISION))"
        )
        self._sql = (
            "INSERT INTO rate_buckets (scope, key, tokens, at) VALUES (?, ?, ?, ?)"  # noqa: S608 (constant fragments)
            " ON CONFLICT (scope, key) DO UPDATE SET"
            f" tokens = CASE WHEN {refill} >= 1.0 THEN {refill} - 1.0 ELSE -1.0 - {refill} END,"
            f" at = {greatest}(excluded.at, rate_buckets.at)"
            " RETURNING tokens"
        )

    async def take(self, key: str, now: float) -> None:
        burst, rate = float(self._limit.burst), self._limit.per_second
        rows = await self._db.write_returning(
            self._sql, (self._name, key, burst - 1.0, float(now), *(burst, rate) * 3)
        )
        tokens = float(rows[0][0])
        if tokens < 0:
            left = -1.0 - tokens
            wait = math.ceil((1.0 - left) / rate)
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for this {self._name}; retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )

    async def prune(self, now: float) -> int:
        """Forget buckets that have refilled completely (they equal a fresh one)."""
        full_after = self._limit.burst / self._limit.per_second
        return await self._db.execute(
            "DELETE FROM rate_buckets WHERE scope = ? AND at < ?", (self._name, now - full_after)
        )


class Lease:
    """A named lease held by one replica at a time (see the module docstring)."""

    def __init__(self, db: Database, *, name: str, holder: str, term_s: float) -> None:
        self._db = db
        self.name = name
        self.holder = holder
        self.term_s = term_s
        now = db.dialect.now
        self._acquire = (
            "INSERT INTO leases (name, holder, expires_at, acquired_at)"  # noqa: S608 (constant)
            f" VALUES (?, ?, {now} + CAST(? AS DOUBLE PRECISION), {now})"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
            " expires_at = excluded.expires_at,"
            " acquired_at = CASE WHEN leases.holder = excluded.holder"
            "   THEN leases.acquired_at ELSE excluded.acquired_at END"
            f" WHERE leases.holder = excluded.holder OR leases.expires_at < {now}"
            " RETURNING holder"
        )
        self._current = f"SELECT holder FROM leases WHERE name = ? AND expires_at >= {now}"  # noqa: S608

    async def acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it if held; whether it is ours."""
        rows = await self._db.write_returning(self._acquire, (self.name, self.holder, self.term_s))
        return bool(rows) and rows[0][0] == self.holder

    async def current_holder(self) -> str | None:
        """Who holds the lease now (``None``: nobody, or it expired)."""
        holder = await self._db.scalar(self._current, (self.name,))
        return None if holder is None else str(holder)

    async def release(self) -> None:
        """Give the lease up (a clean shutdown: another replica need not wait the term)."""
        await self._db.execute(
            "DELETE FROM leases WHERE name = ? AND holder = ?", (self.name, self.holder)
        )
