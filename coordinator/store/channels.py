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

from dgpu.coordinator.db import Connection, Database, Row, u64_sum, u64_total
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
        results: list[ReceiptStatus | ChannelConflict | None] = [None] * len(items)
        pending = list(enumerate(items))
        async with self._db.transaction() as conn:
            # Replicas taking receipts of one provider at once would otherwise upsert the
            # same rows in different orders (and deadlock); one provider's batches queue.
            await conn.lock(f"receipts:{provider}")
            while pending:
                # One multi-row statement per round (aiosqlite costs a thread hop per call);
                # a channel opening twice in the batch waits for the next round, so each
                # round's rows are distinct and its RETURNING rows map back without doubt.
                seen: set[tuple[bytes, int]] = set()
                now_round: list[tuple[int, Receipt, bytes]] = []
                pending_next: list[tuple[int, tuple[Receipt, bytes]]] = []
                for index, (receipt, raw) in pending:
                    key = (receipt.channel, receipt.open_nonce)
                    if key in seen:
                        pending_next.append((index, (receipt, raw)))
                    else:
                        now_round.append((index, receipt, raw))
                    seen.add(key)
                await _ingest_round(conn, now_round, results, provider=provider, now=now)
                pending = pending_next
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

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
            f"UPDATE channels SET settled = {self._db.dialect.greatest}(settled, ?), note = '',"  # noqa: S608
            " updated_at = ? WHERE channel = ? AND open_nonce = ?",
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
            row = await conn.fetchone(
                "INSERT INTO batches (created_at, state) VALUES (?, 'pending') RETURNING id",
                (now,),
            )
            assert row is not None
            batch_id = int(row[0])
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
                    f"UPDATE channels SET settled = {self._db.dialect.greatest}(settled, ?),"  # noqa: S608
                    " updated_at = ? WHERE channel = ? AND open_nonce = ?",
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
        greatest = self._db.dialect.greatest
        paid = f"{greatest}(coalesce(i.settled_after, i.settled_before) - i.settled_before, 0)"
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


_UPSERT_HEAD: Final = (
    "INSERT INTO channels (channel, open_nonce, program_id, provider, renter, job_id,"
    " seq, cumulative, renter_sig, raw, first_seen, updated_at) VALUES "
)
_UPSERT_TAIL: Final = (
    " ON CONFLICT (channel, open_nonce) DO UPDATE SET seq = excluded.seq,"
    "   cumulative = excluded.cumulative, renter_sig = excluded.renter_sig,"
    "   raw = excluded.raw, updated_at = excluded.updated_at, receipts = channels.receipts + 1,"
    "   state = 'open', note = ''"  # a higher receipt gets a fresh chance
    " WHERE excluded.cumulative > channels.cumulative"
    "   AND channels.provider = excluded.provider AND channels.renter = excluded.renter"
    "   AND channels.program_id = excluded.program_id"
    "   AND channels.job_id = excluded.job_id"
    " RETURNING channel, open_nonce, receipts"
)


_KEY_CHUNK: Final = 400  # (channel, open_nonce) pairs per look-up: far below sqlite's limit


async def _ingest_round(
    conn: Connection,
    items: Sequence[tuple[int, Receipt, bytes]],
    results: list[ReceiptStatus | ChannelConflict | None],
    *,
    provider: str,
    now: int,
) -> None:
    """Upsert distinct channel openings in one statement (chunks of 64 rows), then read
    the rows that did not change in one query and tell stale, duplicate and conflicting
    receipts apart; results go into ``results`` at each item's index."""
    rows = {
        index: (
            address_of(receipt.channel),
            receipt.open_nonce,
            address_of(receipt.program_id),
            provider,
            address_of(receipt.renter),
            receipt.job_id,
            receipt.seq,
            receipt.cumulative,
            receipt.sig,
            raw,
            now,
            now,
        )
        for index, receipt, raw in items
    }
    changed: dict[tuple[str, int], int] = {}
    indices = list(rows)
    for start in range(0, len(indices), 64):
        chunk = indices[start : start + 64]
        sql = _UPSERT_HEAD + ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * len(chunk)) + _UPSERT_TAIL
        params = [value for index in chunk for value in rows[index]]
        changed.update(((r[0], r[1]), r[2]) for r in await conn.fetchall(sql, params))
    unchanged = [i for i in indices if (rows[i][0], rows[i][1]) not in changed]
    known: dict[tuple[str, int], Row] = {}
    for start in range(0, len(unchanged), _KEY_CHUNK):
        chunk = unchanged[start : start + _KEY_CHUNK]
        # the cast types the VALUES column for PostgreSQL (its parameters are untyped)
        wanted = ",".join(["(?, CAST(? AS BIGINT))"] * len(chunk))
        params = [value for index in chunk for value in rows[index][:2]]
        found = await conn.fetchall(
            "SELECT channel, open_nonce, provider, renter, program_id, job_id, cumulative,"  # noqa: S608
            f" state FROM channels WHERE (channel, open_nonce) IN (VALUES {wanted})",
            params,
        )
        known.update(((r["channel"], r["open_nonce"]), r) for r in found)
    for index, receipt, _ in items:
        row = rows[index]
        key = (row[0], row[1])
        if key in changed:
            results[index] = "created" if changed[key] == 1 else "raised"
            continue
        stored = known[key]
        if stored["state"] == "rejected" and stored["provider"] != provider:
            # Whoever posted first was refused by the chain: the channel is open to others.
            await conn.execute(
                "DELETE FROM channels WHERE channel = ? AND open_nonce = ? AND state = 'rejected'",
                key,
            )
            await conn.fetchall(_UPSERT_HEAD + "(?,?,?,?,?,?,?,?,?,?,?,?)" + _UPSERT_TAIL, row)
            results[index] = "created"
        elif stored["provider"] != provider:
            results[index] = ChannelConflict("this channel's receipts come from another provider")
        elif stored["renter"] != row[4] or stored["program_id"] != row[2]:
            results[index] = ChannelConflict("receipt names another renter or program")
        elif bytes(stored["job_id"]) != receipt.job_id:
            results[index] = ChannelConflict("receipt names another job for this channel")
        else:
            results[index] = "duplicate" if receipt.cumulative == stored["cumulative"] else "stale"
