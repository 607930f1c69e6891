"""Probe verdicts: renter-signed results of probe jobs, per provider and per offer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from dgpu.coordinator.db import Database, Row
from dgpu.protocol.identity import address_of
from dgpu.protocol.messages import ProbeVerdict

# What says anything about a provider's claims: an inconclusive probe (say, an image without
# PyTorch) neither passes nor flags it.
DECISIVE: Final = ("verified", "mismatch", "simulated")

VERIFIED_SINCE: Final = (
    "EXISTS (SELECT 1 FROM probe_verdicts v WHERE v.provider = o.provider"
    " AND v.verdict = 'verified' AND v.at >= ? AND NOT EXISTS (SELECT 1 FROM probe_verdicts w"
    " WHERE w.provider = v.provider AND w.verdict IN ('mismatch', 'simulated')"
    " AND w.at >= v.at))"
)
"""SQL test of an offer row ``o``: its provider has a ``verified`` verdict at or after the
parameter, and no mismatch (or simulated) verdict since (a tie counts against it)."""


def verdict_json(row: Row) -> dict[str, Any]:
    return {
        "job_id": bytes(row["job_id"]).hex(),
        "provider": row["provider"],
        "renter": row["renter"],
        "offer_id": bytes(row["offer_id"]).hex(),
        "gpu_model": row["gpu_model"],
        "verdict": row["verdict"],
        "reasons": json.loads(row["reasons"]),
        "measured_gflops": row["measured_gflops"],
        "signed_at": row["signed_at"],
        "at": row["at"],
    }


class VerdictRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def job_links(self, job_id: bytes, renter: str, provider: str) -> bool:
        """Whether a channel of job ``job_id`` links this renter to this provider (its
        receipts reached the coordinator): only a paid job's verdict is taken."""
        known = await self._db.scalar(
            "SELECT count(*) FROM channels WHERE job_id = ? AND renter = ? AND provider = ?",
            (job_id, renter, provider),
        )
        return bool(known)

    async def add(self, verdict: ProbeVerdict, raw: bytes, now: int) -> bool:
        """Store a verdict; False when this job's verdict is already stored (the first
        stands: one probe job, one verdict)."""
        inserted = await self._db.execute(
            "INSERT INTO probe_verdicts (job_id, provider, renter, offer_id, gpu_model, verdict,"
            " reasons, measured_gflops, signed_at, at, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (job_id) DO NOTHING",
            (
                verdict.job_id,
                address_of(verdict.provider),
                address_of(verdict.renter),
                verdict.offer_id,
                verdict.gpu_model,
                verdict.verdict,
                json.dumps(list(verdict.reasons)),
                verdict.measured_gflops,
                verdict.at,
                now,
                raw,
            ),
        )
        return inserted > 0

    async def for_provider(self, address: str, limit: int = 20) -> list[Row]:
        """The provider's verdicts, newest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM probe_verdicts WHERE provider = ? ORDER BY at DESC, job_id LIMIT ?",
            (address, limit),
        )
        return list(rows)

    async def standing(self, address: str, since: int) -> str | None:
        """The provider's latest decisive verdict (see DECISIVE) at or after ``since``."""
        value = await self._db.scalar(
            "SELECT verdict FROM probe_verdicts WHERE provider = ? AND at >= ?"
            " AND verdict IN ('verified', 'mismatch', 'simulated')"
            # a tie between a pass and a flag is read as the flag
            " ORDER BY at DESC, CASE verdict WHEN 'verified' THEN 1 ELSE 0 END LIMIT 1",
            (address, since),
        )
        return None if value is None else str(value)

    async def for_offers(self, offers: Sequence[Row]) -> dict[bytes, str]:
        """The verdict shown beside each offer row: the latest on that offer, else the
        latest on the same provider's same GPU model (a provider re-signs its offer under
        a new id whenever its free capacity changes, a probe job included). Offers of
        providers never probed are left out."""
        rows = await self._oldest_first(sorted({row["provider"] for row in offers}))
        by_offer = {bytes(r["offer_id"]): r["verdict"] for r in rows}
        by_model = {(r["provider"], r["gpu_model"]): r["verdict"] for r in rows}
        shown: dict[bytes, str] = {}
        for offer in offers:
            offer_id = bytes(offer["offer_id"])
            key = (offer["provider"], offer["gpu_model"])
            verdict = by_offer.get(offer_id) or by_model.get(key)
            if verdict is not None:
                shown[offer_id] = verdict
        return shown

    async def latest_per_provider(self, addresses: Sequence[str]) -> dict[str, str]:
        """Each provider's latest verdict (providers without one are left out)."""
        return {row["provider"]: row["verdict"] for row in await self._oldest_first(addresses)}

    async def _oldest_first(self, providers: Sequence[str]) -> list[Row]:
        """The verdicts of ``providers``, oldest first (so later ones win in a dict)."""
        if not providers:
            return []
        marks = ",".join("?" * len(providers))
        rows = await self._db.fetchall(
            "SELECT offer_id, provider, gpu_model, verdict FROM probe_verdicts"  # noqa: S608 (marks)
            f" WHERE provider IN ({marks}) ORDER BY at, job_id",
            list(providers),
        )
        return list(rows)
