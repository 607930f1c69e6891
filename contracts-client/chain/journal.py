"""The ledger's journal: an SQLite database (WAL) holding everything a restart needs.

LiteSVM can neither list nor export its state, so whatever is not captured when it
changes is lost. The ledger therefore writes, in one SQLite transaction per landed
transaction and *before* anyone is told it landed: the post-state of every writable
account, the transaction with its metadata, the address index, the new block and the
head (slot and clock). ``synchronous=NORMAL`` in WAL mode survives ``kill -9`` of the
process (a power cut may lose the last few commits, never corrupt the file).

Without a path the journal lives in memory: the same code path for in-process chains,
with the history pruned to a bound instead of kept forever.

The database is marked with an SQLite ``application_id`` so that a file from anything
else (or a newer schema) is refused in words instead of being half-read.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgpu.contracts_client.chain.errors import ChainError
from solders.account import Account
from solders.pubkey import Pubkey

APPLICATION_ID = 0x64677075  # "dgpu"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE account (
    pubkey BLOB PRIMARY KEY, lamports INTEGER NOT NULL, owner BLOB NOT NULL,
    executable INTEGER NOT NULL, rent_epoch INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE INDEX account_owner ON account (owner);
CREATE TABLE block (
    slot INTEGER PRIMARY KEY, blockhash TEXT NOT NULL, parent_slot INTEGER NOT NULL,
    previous_blockhash TEXT NOT NULL, block_time INTEGER NOT NULL, signature BLOB
);
CREATE TABLE tx (
    signature BLOB PRIMARY KEY, slot INTEGER NOT NULL, block_time INTEGER NOT NULL,
    err TEXT, fee INTEGER NOT NULL, units INTEGER NOT NULL, legacy INTEGER NOT NULL,
    wire BLOB NOT NULL, meta TEXT NOT NULL
);
CREATE INDEX tx_slot ON tx (slot);
CREATE TABLE address_sig (address BLOB NOT NULL, slot INTEGER NOT NULL, signature BLOB NOT NULL);
CREATE INDEX address_sig_by_address ON address_sig (address, slot DESC);
CREATE INDEX address_sig_slot ON address_sig (slot);
"""


class LedgerStateError(ChainError):
    """The state directory holds something that is not a usable ledger of this chain."""

    def __init__(self, path: Path | None, reason: str) -> None:
        super().__init__(f"chain state {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class BlockRow:
    slot: int
    blockhash: str
    parent_slot: int
    previous_blockhash: str
    block_time: int
    signature: bytes | None


@dataclass(frozen=True)
class TxRow:
    signature: bytes
    slot: int
    block_time: int
    err: Any  # the JSON-RPC spelling of the error, or None
    fee: int
    units: int
    legacy: bool
    wire: bytes
    meta: dict[str, Any]


@dataclass(frozen=True)
class Commit:
    """Everything one landed transaction changes, written atomically."""

    accounts: Sequence[tuple[Pubkey, Account | None]]
    tx: TxRow | None
    addresses: Sequence[Pubkey]
    block: BlockRow | None
    head: dict[str, Any]


def _account_row(pubkey: Pubkey, account: Account) -> tuple[Any, ...]:
    return (
        bytes(pubkey),
        account.lamports,
        bytes(account.owner),
        int(account.executable),
        # rent_epoch is u64::MAX for rent-exempt accounts: past SQLite's signed 64 bits
        account.rent_epoch - 2**63,
        bytes(account.data),
    )


def row_account(row: Sequence[Any]) -> tuple[Pubkey, Account]:
    pubkey, lamports, owner, executable, rent_epoch, data = row
    account = Account(
        lamports, data, Pubkey.from_bytes(owner), bool(executable), rent_epoch + 2**63
    )
    return Pubkey.from_bytes(pubkey), account


def _tx(row: Sequence[Any]) -> TxRow:
    sig, slot, block_time, err, fee, units, legacy, wire, meta = row
    return TxRow(
        sig,
        slot,
        block_time,
        None if err is None else json.loads(err),
        fee,
        units,
        bool(legacy),
        wire,
        json.loads(meta),
    )


_TX_COLUMNS = "signature, slot, block_time, err, fee, units, legacy, wire, meta"
_ACCOUNT_COLUMNS = "pubkey, lamports, owner, executable, rent_epoch, data"


class Journal:
    """The SQLite store of one ledger. Not thread-safe: the ledger's lock serializes it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(
                ":memory:" if path is None else str(path),
                isolation_level=None,  # explicit BEGIN/COMMIT
                check_same_thread=False,
            )
            self.is_new = self._open()
        except sqlite3.DatabaseError as exc:
            raise LedgerStateError(path, f"not a readable ledger database ({exc})") from None

    def _open(self) -> bool:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and tables == 0:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)  # executescript would commit on its own
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
            return True
        if app_id != APPLICATION_ID:
            raise LedgerStateError(
                self.path, "this database belongs to something else (not a dgpu chain ledger)"
            )
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise LedgerStateError(
                self.path, f"ledger schema {version}, this dgpu reads schema {SCHEMA_VERSION}"
            )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if self.meta("genesis_hash") is None:
            raise LedgerStateError(self.path, "the ledger has no genesis (incomplete or damaged)")
        return False

    # -- writes --------------------------------------------------------------------------

    def write(self, commit: Commit, meta: dict[str, str] | None = None) -> None:
        """Apply one commit atomically (accounts, transaction, index, block, head)."""
        db = self._db
        db.execute("BEGIN")
        try:
            live = [(k, a) for k, a in commit.accounts if a is not None and a.lamports > 0]
            gone = [(bytes(k),) for k, a in commit.accounts if a is None or a.lamports == 0]
            if live:
                db.executemany(
                    f"INSERT OR REPLACE INTO account ({_ACCOUNT_COLUMNS}) VALUES (?,?,?,?,?,?)",  # noqa: S608 (module constants only)
                    [_account_row(k, a) for k, a in live],
                )
            if gone:
                # a cluster purges accounts left without lamports: so does the journal
                db.executemany("DELETE FROM account WHERE pubkey=?", gone)
            if commit.tx is not None:
                t = commit.tx
                db.execute(
                    f"INSERT INTO tx ({_TX_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",  # noqa: S608 (module constants only)
                    (
                        t.signature,
                        t.slot,
                        t.block_time,
                        None if t.err is None else json.dumps(t.err),
                        t.fee,
                        t.units,
                        int(t.legacy),
                        t.wire,
                        json.dumps(t.meta, separators=(",", ":")),
                    ),
                )
                db.executemany(
                    "INSERT INTO address_sig (address, slot, signature) VALUES (?,?,?)",
                    [(bytes(a), t.slot, t.signature) for a in dict.fromkeys(commit.addresses)],
                )
            if commit.block is not None:
                b = commit.block
                db.execute(
                    "INSERT OR REPLACE INTO block VALUES (?,?,?,?,?,?)",
                    (
                        b.slot,
                        b.blockhash,
                        b.parent_slot,
                        b.previous_blockhash,
                        b.block_time,
                        b.signature,
                    ),
                )
            items = {"head": json.dumps(commit.head), **(meta or {})}
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", list(items.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def prune(self, before_slot: int) -> None:
        """Forget transactions and blocks older than ``before_slot`` (in-memory ledgers)."""
        db = self._db
        db.execute("BEGIN")
        db.execute("DELETE FROM tx WHERE slot < ?", (before_slot,))
        db.execute("DELETE FROM address_sig WHERE slot < ?", (before_slot,))
        db.execute("DELETE FROM block WHERE slot < ?", (before_slot,))
        db.execute("COMMIT")

    # -- reads ---------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def head(self) -> dict[str, Any]:
        raw = self.meta("head")
        if raw is None:
            raise LedgerStateError(self.path, "the ledger has no head (incomplete or damaged)")
        head: dict[str, Any] = json.loads(raw)
        return head

    def accounts(self) -> Iterator[tuple[Pubkey, Account]]:
        for row in self._db.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM account"):  # noqa: S608 (module constants only)
            yield row_account(row)

    def accounts_owned_by(self, owner: Pubkey) -> Iterator[tuple[Pubkey, Account]]:
        query = f"SELECT {_ACCOUNT_COLUMNS} FROM account WHERE owner=? ORDER BY pubkey"  # noqa: S608 (module constants only)
        for row in self._db.execute(query, (bytes(owner),)):
            yield row_account(row)

    def total_lamports(self) -> int:
        return int(self._db.execute("SELECT coalesce(sum(lamports), 0) FROM account").fetchone()[0])

    def account_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM account").fetchone()[0])

    def recent_blocks(self, n: int) -> list[BlockRow]:
        rows = self._db.execute("SELECT * FROM block ORDER BY slot DESC LIMIT ?", (n,)).fetchall()
        return [BlockRow(*r) for r in reversed(rows)]

    def block(self, slot: int) -> BlockRow | None:
        row = self._db.execute("SELECT * FROM block WHERE slot=?", (slot,)).fetchone()
        return None if row is None else BlockRow(*row)

    def blocks_between(self, start: int, end: int, limit: int) -> list[int]:
        rows = self._db.execute(
            "SELECT slot FROM block WHERE slot BETWEEN ? AND ? ORDER BY slot LIMIT ?",
            (start, end, limit),
        )
        return [int(r[0]) for r in rows]

    def first_block(self) -> int | None:
        row = self._db.execute("SELECT min(slot) FROM block").fetchone()
        return None if row[0] is None else int(row[0])

    def transaction(self, signature: bytes) -> TxRow | None:
        query = f"SELECT {_TX_COLUMNS} FROM tx WHERE signature=?"  # noqa: S608 (constants)
        row = self._db.execute(query, (signature,)).fetchone()
        return None if row is None else _tx(row)

    def transactions(self, signatures: Iterable[bytes]) -> list[TxRow | None]:
        return [self.transaction(s) for s in signatures]

    def transaction_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM tx").fetchone()[0])

    def signatures_for(
        self, address: Pubkey, *, before_slot: int | None, until_slot: int | None, limit: int
    ) -> list[TxRow]:
        """Transactions naming ``address``, newest first, strictly between the slots."""
        query = (
            f"SELECT {', '.join('t.' + c.strip() for c in _TX_COLUMNS.split(','))} "  # noqa: S608 (module constants only)
            "FROM address_sig a JOIN tx t ON t.signature = a.signature "
            "WHERE a.address=? AND a.slot < ? AND a.slot > ? ORDER BY a.slot DESC LIMIT ?"
        )
        upper = 2**62 if before_slot is None else before_slot
        lower = -1 if until_slot is None else until_slot
        rows = self._db.execute(query, (bytes(address), upper, lower, limit))
        return [_tx(r) for r in rows]

    def close(self) -> None:
        self._db.close()
