"""``NodeStore``: one sqlite database (WAL) per node.

Every write is its own short transaction, committed before the method returns. The
database runs in WAL mode with ``synchronous=FULL``: a commit returns only after the WAL is
fsync'd, so what a method wrote survives ``kill -9`` and power loss. Callers rely on this
for money: a provider stores a receipt *before* it goes on with the job (which is how it
acknowledges it), a renter stores a receipt before sending it, and a channel before
announcing it.

The methods are synchronous and quick (a commit is one fsync): call them straight from trio
code. One ``NodeStore`` belongs to one thread (sqlite's default check).

A write that fails leaves nothing behind: sqlite rolls a failed statement or commit back
itself (SQLITE_FULL, SQLITE_IOERR ...), and we roll back only a transaction still open —
a second ROLLBACK would fail with "no transaction is active" and hide the first error.
Failures are raised as typed errors that say what is wrong (``StoreFull``: disk full,
ENOSPC; ``StoreReadOnly``; ``StoreLocked``; ``StoreCorrupt``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from dgpu.node.store.errors import RecordNotFound, SchemaTooNew, StoreError, convert
from dgpu.node.store.schema import MIGRATIONS
from dgpu.protocol.messages import Receipt

log = logging.getLogger(__name__)

Role = Literal["provider", "renter"]
SettlementStatus = Literal["handed_off", "submitted", "settled", "failed"]
ChannelStatus = Literal["open", "reclaimed", "closed"]

# Job states; the first ones are live, the rest final.
LIVE_JOB_STATES = frozenset({"agreed", "funded", "starting", "running", "stopping"})
FINAL_JOB_STATES = frozenset({"succeeded", "failed", "cancelled", "stopped", "abandoned"})


@dataclass(frozen=True)
class JobRecord:
    """One job as one side sees it. Messages are kept as their canonical bytes."""

    job_id: bytes
    role: Role
    state: str
    counterparty: bytes
    created_at: int
    updated_at: int
    request: bytes | None = None
    quote: bytes | None = None
    agreement: bytes | None = None
    channel: bytes | None = None
    open_nonce: int | None = None
    deposit: int | None = None
    channel_expires_at: int | None = None
    container: str = ""
    gpus: str = ""
    started_at: int | None = None
    ended_at: int | None = None
    exit_code: int | None = None
    stop_reason: str = ""
    detail: str = ""
    seconds_billed: int = 0

    @property
    def live(self) -> bool:
        return self.state in LIVE_JOB_STATES


@dataclass(frozen=True)
class SettlementRecord:
    channel: bytes
    open_nonce: int
    job_id: bytes
    cumulative: int
    status: SettlementStatus
    via: str
    signature: str
    error: str
    paid_on_chain: int
    updated_at: int


@dataclass(frozen=True)
class ChannelRecord:
    """A channel the renter opened."""

    channel: bytes
    job_id: bytes
    provider: bytes
    mint: bytes
    deposit: int
    open_nonce: int
    expires_at: int
    open_signature: str
    status: ChannelStatus
    reclaim_signature: str
    reclaimed: int
    updated_at: int


@dataclass(frozen=True)
class PeerRecord:
    """Renter: what it saw of one provider. ``failures`` counts failures since the last
    success; ``retry_after`` (unix seconds) is when it may be tried again."""

    provider: bytes
    successes: int = 0
    failures: int = 0
    retry_after: int = 0
    last_success_at: int = 0
    last_failure_at: int = 0
    last_error: str = ""
    updated_at: int = 0


_PEER_COLUMNS = tuple(f.name for f in fields(PeerRecord))
_JOB_COLUMNS = tuple(f.name for f in fields(JobRecord))
_JOB_MUTABLE = frozenset(_JOB_COLUMNS) - {"job_id", "role", "created_at"}
_RECEIPT_COLUMNS = "job_id, seq, renter, program_id, channel, open_nonce, cumulative, sig"


def _receipt(row: sqlite3.Row) -> Receipt:
    return Receipt(
        job_id=row["job_id"],
        seq=row["seq"],
        renter=row["renter"],
        program_id=row["program_id"],
        channel=row["channel"],
        open_nonce=row["open_nonce"],
        cumulative=row["cumulative"],
        sig=row["sig"],
    )


class NodeStore:
    """The node's durable state (see the module docstring)."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, busy_timeout_s: float = 10.0) -> NodeStore:
        """Open (creating it and its folder if needed) and migrate the database at ``path``;
        ``":memory:"`` gives a private in-memory store (simulations). A write waits up to
        ``busy_timeout_s`` for another process's lock, then raises ``StoreLocked``."""
        name = str(path)
        if name != ":memory:":
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(name, isolation_level=None, timeout=busy_timeout_s)
            db.row_factory = sqlite3.Row
            if name != ":memory:":
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{name}: could not switch to WAL (got {mode})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise convert(exc, name, "cannot open the node store") from exc
        store = cls(db, name)
        store._migrate()
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> NodeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise SchemaTooNew(self.path, version, len(MIGRATIONS))
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            statements = [s.strip() for s in script.split(";") if s.strip()]
            try:
                with self._transaction() as db:
                    for statement in statements:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number}")
            except sqlite3.Error as exc:
                raise convert(exc, self.path, f"migration to schema {number} failed") from exc
            log.info("node store %s migrated to schema %d", self.path, number)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE .. COMMIT (fsync'd); rolled back on any error."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise convert(exc, self.path, "cannot begin a transaction") from exc
        try:
            yield self._db
        except BaseException:
            self._rollback()
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise convert(exc, self.path, "commit failed") from exc

    def _rollback(self) -> None:
        if not self._db.in_transaction:
            return  # sqlite already rolled it back (a failed commit, a full disk)
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            # the error that got us here is the one to report; sqlite discards the
            # transaction when the connection is next used or closed
            log.warning("node store %s: rollback failed", self.path, exc_info=True)

    def _write(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> int:
        try:
            with self._transaction() as db:
                return db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise convert(exc, self.path, "write failed") from exc

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise convert(exc, self.path, "read failed") from exc

    def check_writable(self) -> None:
        """Raise a typed error unless a transaction can be committed now (it rewrites the
        header's user_version, a real page write through the WAL and its fsync)."""
        try:
            with self._transaction() as db:
                db.execute(f"PRAGMA user_version = {self.schema_version}")
        except sqlite3.Error as exc:
            raise convert(exc, self.path, "write failed") from exc

    # -- keys -------------------------------------------------------------------------

    def record_key(self, *, address: str, peer_id: str, role: str, path: str, now: int) -> None:
        self._write(
            "INSERT INTO keys (address, peer_id, role, path, first_seen, last_used)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET"
            " role = excluded.role, path = excluded.path, last_used = excluded.last_used",
            (address, peer_id, role, path, now, now),
        )

    def keys(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._read("SELECT * FROM keys ORDER BY first_seen")]

    # -- the chain --------------------------------------------------------------------

    def chain(self) -> tuple[str, str] | None:
        """The genesis hash of the chain this store's records are on, and the URL it
        was recorded from; None before the node first met a chain."""
        rows = self._read("SELECT genesis_hash, rpc_url FROM chain WHERE one = 1")
        return (rows[0]["genesis_hash"], rows[0]["rpc_url"]) if rows else None

    def record_chain(self, genesis_hash: str, *, rpc_url: str, now: int) -> None:
        """Record (or replace) the chain this store's records are on."""
        self._write(
            "INSERT INTO chain (one, genesis_hash, rpc_url, recorded_at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (one) DO UPDATE SET genesis_hash = excluded.genesis_hash,"
            " rpc_url = excluded.rpc_url, recorded_at = excluded.recorded_at",
            (genesis_hash, rpc_url, now),
        )

    def holds_chain_records(self) -> bool:
        """Whether anything here refers to accounts on a chain (jobs past agreement,
        receipts, channels, settlements)."""
        rows = self._read(
            "SELECT EXISTS (SELECT 1 FROM receipts) OR EXISTS (SELECT 1 FROM channels)"
            " OR EXISTS (SELECT 1 FROM settlements)"
            " OR EXISTS (SELECT 1 FROM jobs WHERE channel IS NOT NULL)"
        )
        return bool(rows[0][0])

    # -- jobs -------------------------------------------------------------------------

    def insert_job(self, job: JobRecord) -> None:
        names = ", ".join(_JOB_COLUMNS)
        marks = ", ".join(f":{name}" for name in _JOB_COLUMNS)
        values = {name: getattr(job, name) for name in _JOB_COLUMNS}
        self._write(f"INSERT INTO jobs ({names}) VALUES ({marks})", values)  # noqa: S608

    def update_job(self, job_id: bytes, role: Role, *, now: int, **changes: Any) -> None:
        unknown = set(changes) - _JOB_MUTABLE
        if unknown:
            raise ValueError(f"not job columns: {sorted(unknown)}")
        changes["updated_at"] = now
        assignments = ", ".join(f"{name} = :{name}" for name in changes)
        count = self._write(
            f"UPDATE jobs SET {assignments} WHERE job_id = :job_id AND role = :role",  # noqa: S608
            {**changes, "job_id": job_id, "role": role},
        )
        if count != 1:
            raise RecordNotFound(f"{role} job {job_id.hex()}")

    def get_job(self, job_id: bytes, role: Role) -> JobRecord | None:
        rows = self._read("SELECT * FROM jobs WHERE job_id = ? AND role = ?", (job_id, role))
        return JobRecord(**dict(rows[0])) if rows else None

    def jobs(self, role: Role, *, states: frozenset[str] | None = None) -> list[JobRecord]:
        rows = self._read("SELECT * FROM jobs WHERE role = ? ORDER BY created_at", (role,))
        found = [JobRecord(**dict(row)) for row in rows]
        return [job for job in found if states is None or job.state in states]

    # -- receipts ---------------------------------------------------------------------

    def save_receipt(self, role: Role, receipt: Receipt, *, now: int) -> bool:
        """Store a receipt durably (fsync'd before returning). False when this exact
        cumulative was already stored for the channel opening."""
        try:
            with self._transaction() as db:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO receipts (role, job_id, program_id, channel,"
                    " open_nonce, renter, seq, cumulative, sig, stored_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        role,
                        receipt.job_id,
                        receipt.program_id,
                        receipt.channel,
                        receipt.open_nonce,
                        receipt.renter,
                        receipt.seq,
                        receipt.cumulative,
                        receipt.sig,
                        now,
                    ),
                )
                return cursor.rowcount == 1
        except sqlite3.Error as exc:
            raise convert(exc, self.path, "cannot store a receipt") from exc

    def latest_receipt(self, role: Role, job_id: bytes) -> Receipt | None:
        rows = self._read(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE role = ? AND job_id = ?"  # noqa: S608
            " ORDER BY cumulative DESC LIMIT 1",
            (role, job_id),
        )
        return _receipt(rows[0]) if rows else None

    def receipts(self, role: Role, job_id: bytes) -> list[Receipt]:
        rows = self._read(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE role = ? AND job_id = ?"  # noqa: S608
            " ORDER BY cumulative",
            (role, job_id),
        )
        return [_receipt(row) for row in rows]

    def latest_receipts(self, role: Role) -> list[Receipt]:
        """The highest receipt of every channel opening, oldest channel first."""
        rows = self._read(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts r WHERE role = ? AND cumulative = ("  # noqa: S608
            " SELECT MAX(cumulative) FROM receipts s WHERE s.role = r.role"
            " AND s.channel = r.channel AND s.open_nonce = r.open_nonce)"
            " ORDER BY stored_at, channel",
            (role,),
        )
        return [_receipt(row) for row in rows]

    def unsettled_receipts(self) -> list[Receipt]:
        """Provider: the latest receipt of each channel opening that the chain has not
        been seen to pay in full."""
        settled = {(s.channel, s.open_nonce): s.paid_on_chain for s in self.settlements()}
        return [
            r
            for r in self.latest_receipts("provider")
            if settled.get((r.channel, r.open_nonce), 0) < r.cumulative
        ]

    # -- settlements (provider) -------------------------------------------------------

    def record_settlement(
        self,
        receipt: Receipt,
        *,
        status: SettlementStatus,
        now: int,
        via: str = "",
        signature: str = "",
        error: str = "",
        paid_on_chain: int | None = None,
    ) -> None:
        """Record what became of the latest receipt of a channel opening. ``cumulative``
        and ``paid_on_chain`` never go down."""
        paid = 0 if paid_on_chain is None else paid_on_chain
        self._write(
            "INSERT INTO settlements (channel, open_nonce, job_id, cumulative, status, via,"
            " signature, error, paid_on_chain, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, open_nonce) DO UPDATE SET"
            " cumulative = MAX(cumulative, excluded.cumulative), status = excluded.status,"
            " via = excluded.via, signature = excluded.signature, error = excluded.error,"
            " paid_on_chain = MAX(paid_on_chain, excluded.paid_on_chain),"
            " updated_at = excluded.updated_at",
            (
                receipt.channel,
                receipt.open_nonce,
                receipt.job_id,
                receipt.cumulative,
                status,
                via,
                signature,
                error,
                paid,
                now,
            ),
        )

    def settlements(self) -> list[SettlementRecord]:
        rows = self._read("SELECT * FROM settlements ORDER BY updated_at")
        return [SettlementRecord(**dict(row)) for row in rows]

    def settlement(self, channel: bytes, open_nonce: int) -> SettlementRecord | None:
        rows = self._read(
            "SELECT * FROM settlements WHERE channel = ? AND open_nonce = ?", (channel, open_nonce)
        )
        return SettlementRecord(**dict(rows[0])) if rows else None

    # -- channels (renter) ------------------------------------------------------------

    def save_channel(self, record: ChannelRecord) -> None:
        names = [f.name for f in fields(ChannelRecord)]
        self._write(
            f"INSERT INTO channels ({', '.join(names)}) VALUES"  # noqa: S608
            f" ({', '.join(':' + n for n in names)})",
            {name: getattr(record, name) for name in names},
        )

    def update_channel(
        self,
        channel: bytes,
        *,
        status: ChannelStatus,
        now: int,
        reclaim_signature: str = "",
        reclaimed: int = 0,
    ) -> None:
        count = self._write(
            "UPDATE channels SET status = ?, reclaim_signature = ?, reclaimed = ?,"
            " updated_at = ? WHERE channel = ?",
            (status, reclaim_signature, reclaimed, now, channel),
        )
        if count != 1:
            raise RecordNotFound(f"channel {channel.hex()}")

    def channels(self, *, status: ChannelStatus | None = None) -> list[ChannelRecord]:
        rows = self._read("SELECT * FROM channels ORDER BY expires_at")
        found = [ChannelRecord(**dict(row)) for row in rows]
        return [c for c in found if status is None or c.status == status]

    def channel_of_job(self, job_id: bytes) -> ChannelRecord | None:
        rows = self._read("SELECT * FROM channels WHERE job_id = ?", (job_id,))
        return ChannelRecord(**dict(rows[0])) if rows else None

    # -- peers (renter) ---------------------------------------------------------------

    def save_peer(self, record: PeerRecord) -> None:
        names = ", ".join(_PEER_COLUMNS)
        marks = ", ".join(f":{name}" for name in _PEER_COLUMNS)
        updates = ", ".join(f"{n} = excluded.{n}" for n in _PEER_COLUMNS if n != "provider")
        self._write(
            f"INSERT INTO peers ({names}) VALUES ({marks})"  # noqa: S608
            f" ON CONFLICT (provider) DO UPDATE SET {updates}",
            {name: getattr(record, name) for name in _PEER_COLUMNS},
        )

    def peers(self) -> list[PeerRecord]:
        return [PeerRecord(**dict(row)) for row in self._read("SELECT * FROM peers")]

    def forget_peers(self, *, updated_before: int) -> int:
        """Drop what is known of providers not seen since ``updated_before``."""
        return self._write("DELETE FROM peers WHERE updated_at < ?", (updated_before,))
