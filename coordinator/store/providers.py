"""Providers: presence intervals, job reports, cached scores; and price snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dgpu.coordinator.db import Database, Row, u64_sum, u64_total
from dgpu.coordinator.scores import JobEvidence, ScoreParts
from dgpu.coordinator.store.offers import CURRENT


@dataclass(frozen=True)
class PriceSnapshot:
    model: str
    reference: int
    multiplier_bps: int
    median: int | None
    p10: int | None
    p90: int | None
    gpus: int


SCORE_COLUMNS = ("score", "reliability", "availability", "volume", "price_performance")


def _bps(fraction: float) -> int:
    return max(0, min(10_000, round(fraction * 10_000)))


class ProviderRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, address: str) -> Row | None:
        return await self._db.fetchone("SELECT * FROM providers WHERE address = ?", (address,))

    async def intervals(self, address: str, since: int) -> list[tuple[int, int]]:
        rows = await self._db.fetchall(
            'SELECT start, "end" FROM presence WHERE provider = ? AND "end" > ?', (address, since)
        )
        return [(row["start"], row["end"]) for row in rows]

    async def jobs(self, address: str) -> list[JobEvidence]:
        rows = await self._db.fetchall(
            "SELECT c.job_id, max(c.settled) AS settled,"
            " (SELECT r.outcome FROM job_reports r WHERE r.job_id = c.job_id"
            "   AND r.reporter = c.renter) AS renter_report,"
            " (SELECT r.outcome FROM job_reports r WHERE r.job_id = c.job_id"
            "   AND r.reporter = c.provider) AS provider_report"
            " FROM channels c WHERE c.provider = ? GROUP BY c.job_id, c.renter, c.provider",
            (address,),
        )
        return [
            JobEvidence(row["settled"], row["renter_report"], row["provider_report"])
            for row in rows
        ]

    async def settled(self, address: str) -> int:
        row = await self._db.fetchone(
            "SELECT "  # noqa: S608 (u64_sum builds SQL from constants)
            + u64_sum("settled", "settled")
            + " FROM channels WHERE provider = ?",
            (address,),
        )
        return u64_total(row, "settled")

    async def live_offer_prices(self, address: str, now: int) -> list[tuple[str, int]]:
        rows = await self._db.fetchall(
            "SELECT model_key, price_per_gpu_second FROM offers"
            " WHERE provider = ? AND expires_at > ?",
            (address, now),
        )
        return [(row[0], row[1]) for row in rows]

    async def save_score(self, address: str, parts: ScoreParts, now: int) -> None:
        """Cache a provider's score, and copy it onto its offers (search filters by it)."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE providers SET score = ?, reliability = ?, availability = ?, volume = ?,"
                " price_performance = ?, scored_at = ?, proven = ? WHERE address = ?",
                (
                    _bps(parts.score),
                    _bps(parts.reliability),
                    _bps(parts.availability),
                    _bps(parts.volume),
                    _bps(parts.price_performance),
                    now,
                    int(parts.proven),
                    address,
                ),
            )
            await conn.execute(
                "UPDATE offers SET provider_score = ?, provider_proven = ? WHERE provider = ?",
                (_bps(parts.score), int(parts.proven), address),
            )

    async def addresses(self, since: int = 0) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT address FROM providers WHERE last_seen >= ? OR address IN"
            " (SELECT provider FROM channels WHERE updated_at >= ?) ORDER BY address",
            (since, since),
        )
        return [row[0] for row in rows]

    async def listing(self, now: int, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        """Providers by score; score parts as fractions of 1.0."""
        total = await self._db.scalar("SELECT count(*) FROM providers")
        rows = await self._db.fetchall(
            "SELECT p.*, (SELECT count(*) FROM offers o WHERE o.provider = p.address"  # noqa: S608 (constant CURRENT)
            f"   AND o.expires_at > ? AND {CURRENT}) AS live_offers,"
            " (SELECT coalesce(sum(gpu_count), 0) FROM offers o WHERE o.provider = p.address"
            f"   AND o.expires_at > ? AND {CURRENT}) AS live_gpus,"
            " (SELECT coalesce(sum(settled >> 32), 0) FROM channels c"
            "   WHERE c.provider = p.address) AS settled_hi,"
            " (SELECT coalesce(sum(settled & 4294967295), 0) FROM channels c"
            "   WHERE c.provider = p.address) AS settled_lo"
            " FROM providers p ORDER BY p.score DESC, p.address LIMIT ? OFFSET ?",
            (now, now, now, now, limit, offset),
        )
        listed = []
        for row in rows:
            doc = dict(row)
            doc["settled"] = u64_total(row, "settled")
            del doc["settled_hi"], doc["settled_lo"]
            for name in SCORE_COLUMNS:
                doc[name] = row[name] / 10_000
            listed.append(doc)
        return int(total), listed

    async def report(
        self, *, job_id: bytes, reporter: str, provider: str, outcome: str, now: int
    ) -> bool:
        """Store a job outcome report; the latest report of each reporter wins.
        Returns whether the job is known for this provider and reporter."""
        known = await self._db.scalar(
            "SELECT count(*) FROM channels WHERE job_id = ? AND provider = ?"
            " AND (renter = ? OR provider = ?)",
            (job_id, provider, reporter, reporter),
        )
        if not known:
            return False
        await self._db.execute(
            "INSERT INTO job_reports (job_id, reporter, provider, outcome, at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, reporter)"
            " DO UPDATE SET outcome = excluded.outcome, at = excluded.at",
            (job_id, reporter, provider, outcome, now),
        )
        return True

    async def recent_demand(self, since: int) -> list[Row]:
        """Channels that received a receipt since ``since``, with their provider's cheapest
        live offer (model, GPUs): the demand side of the market multiplier."""
        rows = await self._db.fetchall(
            "SELECT c.channel, (SELECT o.gpu_model FROM offers o WHERE o.provider = c.provider"
            "   ORDER BY o.expires_at DESC LIMIT 1) AS gpu_model,"
            " (SELECT o.gpu_count FROM offers o WHERE o.provider = c.provider"
            "   ORDER BY o.expires_at DESC LIMIT 1) AS gpu_count"
            " FROM channels c WHERE c.updated_at >= ?",
            (since,),
        )
        return [row for row in rows if row["gpu_model"] is not None]


class PriceRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, at: int, snapshots: Iterable[PriceSnapshot]) -> None:
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO price_snapshots (at, model, reference, multiplier_bps, median,"
                " p10, p90, gpus) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (at, model) DO UPDATE"
                " SET reference = excluded.reference, multiplier_bps = excluded.multiplier_bps,"
                " median = excluded.median, p10 = excluded.p10, p90 = excluded.p90,"
                " gpus = excluded.gpus",
                [
                    (at, s.model, s.reference, s.multiplier_bps, s.median, s.p10, s.p90, s.gpus)
                    for s in snapshots
                ],
            )

    async def history(self, since: int, models: Sequence[str] = ()) -> list[Row]:
        sql = "SELECT * FROM price_snapshots WHERE at >= ?"
        params: list[object] = [since]
        if models:
            sql += f" AND model IN ({','.join('?' * len(models))})"
            params.extend(models)
        rows = await self._db.fetchall(sql + " ORDER BY at, model", params)
        return list(rows)

    async def prune(self, before: int) -> int:
        return await self._db.execute("DELETE FROM price_snapshots WHERE at < ?", (before,))
