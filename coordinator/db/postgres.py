"""The shared store: PostgreSQL through asyncpg, for several coordinator replicas.

Why asyncpg rather than psycopg 3: the coordinator is asyncio only, and asyncpg is an
asyncio-native driver with its own connection pool (psycopg needs the separate
``psycopg_pool`` package for one); its ``Record`` reads by column name *and* position and
turns into a dict like ``aiosqlite.Row``, so the repositories handle rows of both engines
alike; it prepares and caches every statement and speaks the binary protocol (BIGINT comes
back as ``int``, BYTEA as ``bytes``) — the receipt intake's multi-row upserts are its
hottest path. What it lacks, typed stubs, the :class:`~dgpu.coordinator.db.base.Database`
protocol supplies at this boundary.

Statements arrive with ``?`` placeholders (the repositories write one SQL text for both
engines) and are rewritten to ``$1, $2, …`` once each (cached). A NUMERIC value — what
``sum()`` of BIGINTs returns — decodes to ``int`` when it is whole, so sums are exact
Python integers as on sqlite.

Losing the server (down, restarting, a connection cut) raises
:class:`~dgpu.coordinator.errors.StoreUnavailable`; the pool replaces broken connections on
their next use, so service resumes by itself once the server is back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from functools import lru_cache
from typing import Any

import asyncpg
from dgpu.coordinator.db.base import POSTGRESQL, Row
from dgpu.coordinator.db.migrations import check_version, migrations
from dgpu.coordinator.errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x64677075  # "dgpu": replicas starting together migrate one at a time

_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin shutdown, cannot connect now
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except _UNREACHABLE as exc:
        reason = str(exc) or type(exc).__name__
        raise StoreUnavailable(f"the database cannot be reached: {reason}") from exc


@lru_cache(maxsize=2048)
def placeholders(sql: str) -> str:
    """``?`` → ``$1, $2, …`` outside string literals and quoted names."""
    out: list[str] = []
    number = 0
    quote = ""
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "?":
            number += 1
            out.append(f"${number}")
            continue
        out.append(char)
    return "".join(out)


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def _numeric(text: str) -> int | Decimal:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else value


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec(
        "numeric", encoder=str, decoder=_numeric, schema="pg_catalog", format="text"
    )


class _PgConnection:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with _reachable():
            return _rowcount(await self._conn.execute(placeholders(sql), *params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with _reachable():
            await self._conn.executemany(placeholders(sql), list(rows))

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with _reachable():
            return list(await self._conn.fetch(placeholders(sql), *params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with _reachable():
            row: Row | None = await self._conn.fetchrow(placeholders(sql), *params)
            return row

    async def lock(self, key: str) -> None:
        with _reachable():
            await self._conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)


class PostgresDatabase:
    """A pool of connections; each single statement and each transaction takes one."""

    dialect = POSTGRESQL

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgConnection]:
        with _reachable():
            async with self._pool.acquire() as conn, conn.transaction():
                yield _PgConnection(conn)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with _reachable():
            return _rowcount(await self._pool.execute(placeholders(sql), *params))

    async def write_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.fetchall(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with _reachable():
            return list(await self._pool.fetch(placeholders(sql), *params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with _reachable():
            row: Row | None = await self._pool.fetchrow(placeholders(sql), *params)
            return row

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with _reachable():
            return await self._pool.fetchval(placeholders(sql), *params)


async def migrate(conn: Any) -> int:
    """Apply the missing migrations in one transaction under an advisory lock (replicas
    starting together: the first migrates, the others find the work done)."""
    available = migrations()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        check_version(current, available)
        for migration in available[current:]:
            log.info("applying migration %s", migration.name)
            await conn.execute(migration.for_dialect("postgresql"))
            await conn.execute(
                "INSERT INTO schema_version (version) VALUES ($1)", migration.version
            )
            current = migration.version
    return current


def redacted(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


@asynccontextmanager
async def open_postgres(url: str, *, pool_size: int = 10) -> AsyncIterator[PostgresDatabase]:
    """Connect a pool to ``url`` and migrate the database."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=pool_size, init=_init_connection, command_timeout=30
        )
    except (*_UNREACHABLE, asyncpg.PostgresError, ValueError) as exc:
        raise StoreError(f"cannot open database {redacted(url)}: {exc}") from exc
    try:
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except (*_UNREACHABLE, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot migrate database {redacted(url)}: {exc}") from exc
        yield PostgresDatabase(pool)
    finally:
        await pool.close()
