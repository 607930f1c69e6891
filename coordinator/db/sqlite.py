"""The embedded store: one aiosqlite connection to a WAL file, writes serialised.

The default for a devnet or a small operator: one coordinator process (several processes
on one file work, but only as fast as one writer at a time; several machines need
:mod:`~dgpu.coordinator.db.postgres`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from dgpu.coordinator.db.base import SQLITE, Row
from dgpu.coordinator.db.migrations import check_version, migrations, sqlite_statements
from dgpu.coordinator.errors import StoreError

log = logging.getLogger(__name__)


class _SqliteConnection:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, params)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await _fetchall(self._conn, sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._conn.execute(sql, params) as cursor:
            row: Row | None = await cursor.fetchone()
            return row

    async def lock(self, key: str) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` holds the one write lock already."""


class SqliteDatabase:
    """A serialised connection: single statements run as they come, multi-statement
    writes take :meth:`transaction`."""

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteConnection]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteConnection(self._conn)
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

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await _fetchall(self._conn, sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._conn.execute(sql, params) as cursor:
            row: Row | None = await cursor.fetchone()
            return row

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of a one-row query (an aggregate, a key look-up)."""
        rows = await _fetchall(self._conn, sql, params)
        return rows[0][0] if rows else None


async def _fetchall(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> list[Row]:
    # One trip to aiosqlite's thread (execute, fetch and close there): a cursor costs three,
    # each a wake-up of the event loop through its self-pipe, and a search makes two queries.
    return list(await conn.execute_fetchall(sql, params))


async def _schema_version(conn: aiosqlite.Connection) -> int:
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with conn.execute("SELECT max(version) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def migrate(conn: aiosqlite.Connection) -> int:
    """Apply the missing migrations; return the resulting schema version."""
    current = await _schema_version(conn)
    available = migrations()
    check_version(current, available)
    for migration in available[current:]:
        log.info("applying migration %s", migration.name)
        statements = sqlite_statements(migration.for_dialect("sqlite"))
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version) VALUES (?)", (migration.version,)
            )
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        current = migration.version
    return current


@asynccontextmanager
async def open_sqlite(path: Path) -> AsyncIterator[SqliteDatabase]:
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
        yield SqliteDatabase(conn)
    finally:
        await conn.close()
