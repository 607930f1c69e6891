"""The coordinator's database: sqlite (embedded, the default) or PostgreSQL (several
replicas), chosen by what ``--db`` names — a file path or a ``postgresql://`` URL.

Both engines sit behind :class:`Database` (:mod:`.base`), apply the same numbered
migrations (:mod:`.migrations`) and answer the same SQL text; :class:`Dialect` holds the
few words that differ. A database newer than this code is refused
(:class:`~dgpu.coordinator.errors.StoreError`); an unreachable PostgreSQL raises
:class:`~dgpu.coordinator.errors.StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from dgpu.coordinator.db.base import (
    Connection,
    Database,
    Dialect,
    Row,
    StoreUnavailable,
    u64_sum,
    u64_total,
)
from dgpu.coordinator.db.migrations import Migration, migrations
from dgpu.coordinator.db.postgres import open_postgres, redacted
from dgpu.coordinator.db.sqlite import open_sqlite

_URL_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL server rather than a sqlite file."""
    return isinstance(target, str) and target.startswith(_URL_SCHEMES)


def describe(target: str | Path) -> str:
    """``target`` for logs and messages (a URL without its password)."""
    return redacted(target) if isinstance(target, str) else str(target)


@asynccontextmanager
async def open_database(target: str | Path) -> AsyncIterator[Database]:
    """Open and migrate the database ``target`` names: a ``postgresql://`` URL or a sqlite
    file path."""
    if is_database_url(target):
        async with open_postgres(str(target)) as pg:
            yield pg
    else:
        async with open_sqlite(Path(target)) as lite:
            yield lite


__all__ = [
    "Connection",
    "Database",
    "Dialect",
    "Migration",
    "Row",
    "StoreUnavailable",
    "describe",
    "is_database_url",
    "migrations",
    "open_database",
    "u64_sum",
    "u64_total",
]
