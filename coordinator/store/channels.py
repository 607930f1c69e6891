"""Receipts and settlement batches.

One row per channel opening ``(channel, open_nonce)`` keeps the highest receipt seen and
``settled``, the on-chain high-water mark as last read. A batch is written (state
``pending``) before its transaction is sent, marked ``submitted`` with the signature, and
closed as ``confirmed``, ``reconciled`` (closed from chain state after a restart) or
``failed``. Items of open batches are excluded from new batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiosqlite
from dgpu.coordinator.db import Database, Row, u64_sum, u64_total
from dgpu.coordinator.errors import ChannelConflict
from dgpu.protocol.identity import address_of, public_key_of_address
from dgpu.protocol.messages import Receipt

ReceiptStatus = Literal["created", "raised", "duplicate", "stale"]
OPEN_BATCH_STATES: Final = ("pending", "submitted")


@dataclass(frozen=True)
class ChannelKey:
    channel: str
    open_nonce: int


@dataclass(frozen=True)
class Unsettled:
    """The best receipt of one channel opening that pays more than what the chain settled."""

    key: ChannelKey
    program_id: str
    provider: str
    renter: str
    cumulative: int
    settled: int
    renter_sig: bytes
    raw: bytes
    job_id: bytes
    seq: int

    def receipt(self) -> Receipt:
        """The receipt as the renter signed it (what the settler sends)."""
        return Receipt(
            job_id=self.job_id,
            seq=self.seq,
            renter=public_key_of_address(self.renter),
            program_id=public_key_of_address(self.program_id),
            channel=public_key_of_address(self.key.channel),
            open_nonce=self.key.open_nonce,
            cumulative=self.cumulative,
            sig=self.renter_sig,
        )


class ChannelRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ingest(
        self, receipt: Receipt, raw: bytes, *, provider: str, now: int
    ) -> ReceiptStatus:
        """Keep ``receipt`` (signature already verified) if it beats the stored one;
        :class:`ChannelConflict` when the channel belongs to another provider, renter,
        program or job."""
        (status,) = await self.ingest_many([(receipt, raw)], provider=provider, now=now)
        if isinstance(status, ChannelConflict):
            raise status
        return status

    async def ingest_many(
        self, items: Sequence[tuple[Receipt, bytes]], *, provider: str, now: int
    ) -> list[ReceiptStatus | ChannelConflict]:
        """:meth:`ingest` for many receipts of one provider in one transaction (one fsync
        for the lot); a conflict refuses that receipt only, and is returned in its place."""
        async with self._db.transaction() as conn:
            return [
                await _ingest_on(conn, receipt, raw, provider=provider, now=now)
                for receipt, raw in items
            ]

    async def get(self, key: ChannelKey) -> Row | None:
        return await self._db.fetchone(
            "SELECT * FROM channels WHERE channel = ? AND open_nonce = ?",
            (key.channel, key.open_nonce),
        )

    async def count_pending(self) -> tuple[int, int]:
        """(channels owed more than settled, total amount owed) among open channels."""
        row = await self._db.fetchone(
            "SELECT count(*) AS n, "  # noqa: S608 (u64_sum builds SQL from constants)
            + u64_sum("cumulative - settled", "owed")
            + " FROM channels WHERE state = 'open' AND cumulative > settled"
        )
        assert row is not None
        return int(row["n"]), u64_total(row, "owed")

    async def unsettled(self, limit: int) -> list[Unsettled]:
        rows = await self._db.fetchall(
            "SELECT * FROM channels c WHERE c.state IN ('open', 'missing')"
            " AND c.cumulative > c.settled"
            " AND NOT EXISTS (SELECT 1 FROM batch_items i JOIN batches b ON b.id = i.batch_id"
            "   WHERE i.channel = c.channel AND i.open_nonce = c.open_nonce"
            "   AND b.state IN ('pending', 'submitted'))"
            " ORDER BY c.updated_at, c.channel LIMIT ?",
            (limit,),
        )
        return [
            Unsettled(
                key=ChannelKey(row["channel"], row["open_nonce"]),
                program_id=row["program_id"],
                provider=row["provider"],
                renter=row["renter"],
                cumulative=row["cumulative"],
                settled=row["settled"],
                renter_sig=bytes(row["renter_sig"]),
                raw=bytes(row["raw"]),
                job_id=bytes(row["job_id"]),
                seq=row["seq"],
            )
            for row in rows
        ]

    async def set_settled(self, key: ChannelKey, settled: int, now: int) -> None:
        """Record the chain's high-water mark (never lowered)."""
        await self._db.execute(
            "UPDATE channels SET settled = max(settled, ?), note = '', updated_at = ?"
            " WHERE channel = ? AND open_nonce = ?",
            (settled, now, key.channel, key.open_nonce),
        )

    async def mark(self, key: ChannelKey, *, state: str, note: str) -> None:
        """Set a channel aside (``rejected``) or note a transient problem (state ``open``)."""
        await self._db.execute(
            "UPDATE channels SET state = ?, note = ? WHERE channel = ? AND open_nonce = ?",
            (state, note[:300], key.channel, key.open_nonce),
        )

    async def for_provider(self, provider: str, limit: int = 50) -> list[Row]:
        rows = await self._db.fetchall(
            "SELECT channel, open_nonce, renter, job_id, cumulative, settled, state, note,"
            " receipts, first_seen, updated_at FROM channels WHERE provider = ?"
            " ORDER BY updated_at DESC LIMIT ?",
            (provider, limit),
        )
        return list(rows)

    async def provider_totals(self, provider: str) -> dict[str, int]:
        row = await self._db.fetchone(
            "SELECT count(*) AS channels, count(DISTINCT job_id) AS jobs, "  # noqa: S608
            + u64_sum("settled", "settled")
            + ", "
            + u64_sum("cumulative", "owed")
            + " FROM channels WHERE provider = ?",
            (provider,),
        )
        assert row is not None
        return {
            "channels": int(row["channels"]),
            "jobs": int(row["jobs"]),
            "settled": u64_total(row, "settled"),
            "owed": u64_total(row, "owed"),
        }

    async def total_settled(self) -> int:
        sql = "SELECT " + u64_sum("settled", "settled") + " FROM channels"  # noqa: S608
        row = await self._db.fetchone(sql)
        return u64_total(row, "settled")

    # --- batches -------------------------------------------------------------------

    async def create_batch(self, items: Iterable[Unsettled], now: int) -> int:
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO batches (created_at, state) VALUES (?, 'pending')", (now,)
            )
            batch_id = cursor.lastrowid
            assert batch_id is not None
            await conn.executemany(
                "INSERT INTO batch_items (batch_id, channel, open_nonce, provider, cumulative,"
                " settled_before) VALUES (?,?,?,?,?,?)",
                [
                    (batch_id, u.key.channel, u.key.open_nonce, u.provider, u.cumulative, u.settled)
                    for u in items
                ],
            )
            return batch_id

    async def set_submitted(self, batch_id: int, signature: str) -> None:
        await self._db.execute(
            "UPDATE batches SET state = 'submitted', signature = ? WHERE id = ?",
            (signature, batch_id),
        )

    async def finish_batch(
        self,
        batch_id: int,
        *,
        state: Literal["confirmed", "reconciled", "failed"],
        settled_after: Mapping[ChannelKey, int],
        now: int,
        error: str = "",
    ) -> None:
        """Close a batch and raise each channel's ``settled`` to what the chain shows."""
        async with self._db.transaction() as conn:
            for key, settled in settled_after.items():
                await conn.execute(
                    "UPDATE batch_items SET settled_after = ? WHERE batch_id = ? AND channel = ?"
                    " AND open_nonce = ?",
                    (settled, batch_id, key.channel, key.open_nonce),
                )
                await conn.execute(
                    "UPDATE channels SET settled = max(settled, ?), updated_at = ?"
                    " WHERE channel = ? AND open_nonce = ?",
                    (settled, now, key.channel, key.open_nonce),
                )
            await conn.execute(
                "UPDATE batches SET state = ?, error = ?, finished_at = ? WHERE id = ?",
                (state, error[:500], now, batch_id),
            )

    async def open_batches(self) -> list[tuple[int, str, list[tuple[ChannelKey, int]]]]:
        """Batches left pending/submitted (by a crash): id, signature, and the channel key
        and cumulative of each item."""
        batches = await self._db.fetchall(
            "SELECT id, signature FROM batches WHERE state IN ('pending', 'submitted') ORDER BY id"
        )
        result: list[tuple[int, str, list[tuple[ChannelKey, int]]]] = []
        for batch in batches:
            items = await self._db.fetchall(
                "SELECT channel, open_nonce, cumulative FROM batch_items WHERE batch_id = ?",
                (batch["id"],),
            )
            keys = [(ChannelKey(i["channel"], i["open_nonce"]), i["cumulative"]) for i in items]
            result.append((batch["id"], batch["signature"], keys))
        return result

    async def batches(self, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        total = await self._db.scalar("SELECT count(*) FROM batches")
        paid = "max(coalesce(i.settled_after, i.settled_before) - i.settled_before, 0)"
        rows = await self._db.fetchall(
            "SELECT b.id, b.created_at, b.state, b.signature, b.error, b.finished_at,"  # noqa: S608
            " count(i.channel) AS items, "
            + u64_sum(paid, "amount")
            + " FROM batches b LEFT JOIN batch_items i ON i.batch_id = b.id"
            " GROUP BY b.id ORDER BY b.id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        listed = []
        for row in rows:
            doc = dict(row)
            doc["amount"] = u64_total(row, "amount")
            del doc["amount_hi"], doc["amount_lo"]
            listed.append(doc)
        return int(total), listed

    async def batch_items(self, batch_ids: Iterable[int]) -> dict[int, list[Row]]:
        ids = list(batch_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        sql = (
            "SELECT batch_id, channel, open_nonce, provider, cumulative, settled_before,"  # noqa: S608
            f" settled_after FROM batch_items WHERE batch_id IN ({marks}) ORDER BY channel"
        )  # only placeholders are interpolated
        rows = await self._db.fetchall(sql, ids)
        grouped: dict[int, list[Row]] = {i: [] for i in ids}
        for row in rows:
            grouped[row["batch_id"]].append(row)
        return grouped

    async def provider_history(self, provider: str, limit: int = 50) -> list[Row]:
        rows = await self._db.fetchall(
            "SELECT b.id, b.state, b.signature, b.finished_at, i.channel, i.cumulative,"
            " i.settled_before, i.settled_after"
            " FROM batch_items i JOIN batches b ON b.id = i.batch_id"
            " WHERE i.provider = ? ORDER BY b.id DESC LIMIT ?",
            (provider, limit),
        )
        return list(rows)

    async def batch_counts(self) -> dict[str, int]:
        rows = await self._db.fetchall("SELECT state, count(*) FROM batches GROUP BY state")
        return {row[0]: int(row[1]) for row in rows}


_UPSERT: Final = (
    "INSERT INTO channels (channel, open_nonce, program_id, provider, renter, job_id,"
    " seq, cumulative, renter_sig, raw, first_seen, updated_at)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (channel, open_nonce) DO UPDATE SET seq = excluded.seq,"
    "   cumulative = excluded.cumulative, renter_sig = excluded.renter_sig,"
    "   raw = excluded.raw, updated_at = excluded.updated_at, receipts = receipts + 1,"
    "   state = 'open', note = ''"  # a higher receipt gets a fresh chance
    " WHERE excluded.cumulative > channels.cumulative"
    "   AND channels.provider = excluded.provider AND channels.renter = excluded.renter"
    "   AND channels.program_id = excluded.program_id"
    "   AND channels.job_id = excluded.job_id"
    " RETURNING receipts"
)


async def _ingest_on(
    conn: aiosqlite.Connection, receipt: Receipt, raw: bytes, *, provider: str, now: int
) -> ReceiptStatus | ChannelConflict:
    """One receipt inside the caller's transaction: one statement in the common cases (a
    new channel, a higher receipt); the stored row is read only to tell a stale or
    duplicate receipt from a conflicting one."""
    channel = address_of(receipt.channel)
    renter = address_of(receipt.renter)
    program = address_of(receipt.program_id)
    params = (
        channel,
        receipt.open_nonce,
        program,
        provider,
        renter,
        receipt.job_id,
        receipt.seq,
        receipt.cumulative,
        receipt.sig,
        raw,
        now,
        now,
    )
    async with conn.execute(_UPSERT, params) as cursor:
        returned = list(await cursor.fetchall())
    if returned:
        return "created" if returned[0][0] == 1 else "raised"
    async with conn.execute(
        "SELECT provider, renter, program_id, job_id, cumulative, state FROM channels"
        " WHERE channel = ? AND open_nonce = ?",
        (channel, receipt.open_nonce),
    ) as cursor:
        known = await cursor.fetchone()
    assert known is not None
    if known["state"] == "rejected" and known["provider"] != provider:
        # Whoever posted first was refused by the chain: the channel is open to others.
        await conn.execute(
            "DELETE FROM channels WHERE channel = ? AND open_nonce = ? AND state = 'rejected'",
            (channel, receipt.open_nonce),
        )
        async with conn.execute(_UPSERT, params) as cursor:
            await cursor.fetchall()
        return "created"
    if known["provider"] != provider:
        return ChannelConflict("this channel's receipts come from another provider")
    if known["renter"] != renter or known["program_id"] != program:
        return ChannelConflict("receipt names another renter or program")
    if bytes(known["job_id"]) != receipt.job_id:
        return ChannelConflict("receipt names another job for this channel")
    return "duplicate" if receipt.cumulative == known["cumulative"] else "stale"
