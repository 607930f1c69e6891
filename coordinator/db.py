"""The coordinator's sqlite database: one aiosqlite connection, numbered SQL migrations.

Migrations are the files ``migrations/NNNN_name.sql`` of this package, applied in order,
each in its own transaction together with the bump of ``schema_version``. A database newer
than this code is refused (:class:`~dgpu.coordinator.errors.StoreError`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
from dgpu.coordinator.errors import StoreError

log = logging.getLogger(__name__)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

Row = aiosqlite.Row


def migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every migration shipped with the package, in order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("dgpu.coordinator").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise StoreError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found


class Database:
    """A serialised connection: single statements run as they come, multi-statement
    writes take :meth:`transaction`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write outside an explicit transaction; return the affected row count."""
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            return cursor.rowcount

    async def write_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one write with a ``RETURNING`` clause (its own implicit transaction)."""
        async with self._lock, self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> Iterable[Row]:
        async with self._conn.execute(sql, params) as cursor:
            return await cursor.fetchall()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]


def u64_sum(expr: str, alias: str) -> str:
    """SQL columns ``<alias>_hi`` and ``<alias>_lo`` that :func:`u64_total` adds up exactly.

    sqlite's ``sum()`` of 64-bit integers raises "integer overflow" once the total passes
    2**63 - 1 (two receipts near the maximum were enough to make every page that sums them
    answer 500). Summing the high and low 32 bits apart cannot overflow below 2**31 rows,
    and Python adds the halves with unbounded integers. ``expr`` must be non-negative and
    each value at most 2**63 - 1, which the wire format guarantees for every amount
    (:data:`dgpu.protocol.messages.U64_MAX`)."""
    return (
        f"coalesce(sum(({expr}) >> 32), 0) AS {alias}_hi,"
        f" coalesce(sum(({expr}) & 4294967295), 0) AS {alias}_lo"
    )


def u64_total(row: Row | None, alias: str) -> int:
    """The exact sum of :func:`u64_sum`'s two columns (0 without a row)."""
    if row is None:
        return 0
    return (int(row[f"{alias}_hi"]) << 32) + int(row[f"{alias}_lo"])


def _statements(sql: str) -> list[str]:
    """Split a migration into complete statements (triggers included)."""
    statements: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise StoreError(f"migration ends inside a statement: {pending.strip()[:60]!r}")
    return statements


async def _schema_version(conn: aiosqlite.Connection) -> int:
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with conn.execute("SELECT max(version) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def migrate(conn: aiosqlite.Connection) -> int:
    """Apply the missing migrations; return the resulting schema version."""
    current = await _schema_version(conn)
    available = migrations()
    if current > len(available):
        raise StoreError(
            f"database schema version {current} is newer than this coordinator "
            f"({len(available)}); upgrade dgpu"
        )
    for version, name, sql in available[current:]:
        log.info("applying migration %s", name)
        statements = _statements(sql)
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        current = version
    return current


@asynccontextmanager
async def open_database(path: Path) -> AsyncIterator[Database]:
    """Open (creating if needed) and migrate the database at ``path``."""
    if str(path) == ":memory:":
        raise StoreError("the coordinator needs a database file, not :memory:")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = await aiosqlite.connect(str(path), isolation_level=None)
    except aiosqlite.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        try:
            await migrate(conn)
        except aiosqlite.Error as exc:
            raise StoreError(f"cannot migrate database {path}: {exc}") from exc
        yield Database(conn)
    finally:
        await conn.close()
