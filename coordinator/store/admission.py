"""Admission state of offers: per-key and per-address limits at ingest, and the providers'
reachability probes (shared by the replicas through the database)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from dgpu.coordinator.config import AdmissionLimits
from dgpu.coordinator.db import Connection, Database
from dgpu.coordinator.errors import ApiError, unprocessable
from dgpu.protocol.messages import Offer

KEY_WINDOW_S = 3600


@dataclass(frozen=True)
class Due:
    """A provider to probe, at the addresses of its newest live offer."""

    provider: str
    """Base58 address (the provider's public key)."""
    multiaddrs: tuple[str, ...]


class OfferAdmission:
    """The checks one ingest runs inside its transaction (see
    :meth:`~dgpu.coordinator.store.offers.OfferRepo.ingest`)."""

    def __init__(self, limits: AdmissionLimits, *, client: str | None, probing: bool) -> None:
        self.limits = limits
        self.client = client
        """The client address a direct post came from (None: through a trusted relay)."""
        self.probing = probing
        self.admitted = True
        """After :meth:`check`: whether the provider's offers are served now."""

    async def check(self, conn: Connection, offer: Offer, provider: str, now: int) -> bool:
        """Raise when a limit refuses ``offer``; whether it is admitted (served) at once."""
        limits = self.limits
        live = await conn.fetchone(
            "SELECT count(*) AS n, min(expires_at) AS first FROM offers"
            " WHERE provider = ? AND expires_at > ? AND offer_id <> ?",
            (provider, now, offer.offer_id),
        )
        assert live is not None
        if live["n"] >= limits.live_offers_per_key:
            raise unprocessable(
                f"this provider key already has {live['n']} live offers (limit"
                f" {limits.live_offers_per_key}); refresh an offer instead of signing new ones,"
                f" or wait until one expires (in {live['first'] - now}s)",
                "too_many_offers",
            )
        if self.client is not None:
            await self._count_new_key(conn, provider, self.client, now)
        if self.probing:
            probe = await conn.fetchone(
                "SELECT reachable, valid_until FROM reachability WHERE provider = ?", (provider,)
            )
            self.admitted = (
                probe is not None and bool(probe["reachable"]) and probe["valid_until"] > now
            )
        return self.admitted

    async def _count_new_key(self, conn: Connection, provider: str, client: str, now: int) -> None:
        if await conn.fetchone("SELECT 1 FROM key_admissions WHERE provider = ?", (provider,)):
            return
        # Keys known before this table existed are not new.
        if await conn.fetchone("SELECT 1 FROM providers WHERE address = ?", (provider,)):
            return
        # Every replica counts one address's new keys one at a time.
        await conn.lock(f"new-keys:{client}")
        row = await conn.fetchone(
            "SELECT count(*) AS n, min(at) AS first FROM key_admissions WHERE ip = ? AND at > ?",
            (client, now - KEY_WINDOW_S),
        )
        assert row is not None
        limit = self.limits.new_keys_per_ip_per_hour
        if row["n"] >= limit:
            wait = max(1, row["first"] + KEY_WINDOW_S - now)
            raise ApiError(
                429,
                "too_many_new_keys",
                f"{row['n']} new provider keys were posted from this address in the last hour"
                f" (limit {limit}); retry in {wait}s",
                headers={"Retry-After": str(wait)},
            )
        await conn.execute(
            "INSERT INTO key_admissions (provider, ip, at) VALUES (?, ?, ?)",
            (provider, client, now),
        )


class AdmissionRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def due(self, now: int, limit: int) -> list[Due]:
        """Providers with a live offer whose probe is missing or out of date, with the
        addresses of their newest live offer."""
        rows = await self._db.fetchall(
            "SELECT o.provider, o.multiaddrs FROM offers o"
            " LEFT JOIN reachability p ON p.provider = o.provider"
            " WHERE o.expires_at > ? AND (p.provider IS NULL OR p.valid_until <= ?)"
            " ORDER BY o.provider, o.created_at DESC",
            (now, now),
        )
        found: dict[str, Due] = {}
        for row in rows:
            if row["provider"] not in found:
                found[row["provider"]] = Due(row["provider"], tuple(json.loads(row["multiaddrs"])))
            if len(found) >= limit:
                break
        return list(found.values())

    async def record(
        self, provider: str, *, reachable: bool, detail: str, now: int, valid_for: int
    ) -> int:
        """Store a probe's result and admit (or withdraw) the provider's live offers;
        how many offers changed."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO reachability (provider, reachable, detail, checked_at, valid_until)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider) DO UPDATE SET"
                " reachable = excluded.reachable, detail = excluded.detail,"
                " checked_at = excluded.checked_at, valid_until = excluded.valid_until",
                (provider, int(reachable), detail[:256], now, now + valid_for),
            )
            return await conn.execute(
                "UPDATE offers SET admitted = ? WHERE provider = ? AND expires_at > ?"
                " AND admitted <> ?",
                (int(reachable), provider, now, int(reachable)),
            )

    async def reachability_of(self, provider: str) -> dict[str, object] | None:
        row = await self._db.fetchone(
            "SELECT reachable, detail, checked_at, valid_until FROM reachability"
            " WHERE provider = ?",
            (provider,),
        )
        if row is None:
            return None
        return {
            "reachable": bool(row["reachable"]),
            "detail": row["detail"],
            "checked_at": row["checked_at"],
            "valid_until": row["valid_until"],
        }

    async def pending(self, now: int) -> int:
        """Live offers waiting for their provider's probe."""
        return int(
            await self._db.scalar(
                "SELECT count(*) FROM offers WHERE admitted = 0 AND expires_at > ?", (now,)
            )
        )

    async def prune(self, before: int) -> int:
        return await self._db.execute("DELETE FROM key_admissions WHERE at < ?", (before,))
