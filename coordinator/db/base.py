"""What the repositories see of a database, whichever engine holds it.

Repositories write one SQL text for both engines: ``?`` placeholders (rewritten to ``$n`` for
PostgreSQL), portable syntax (``INSERT … ON CONFLICT``, ``RETURNING``, ``CAST(? AS BIGINT)``
where a parameter's type cannot be inferred), and :class:`Dialect` for the few words that
differ (``max(a, b)`` vs ``greatest(a, b)``, sqlite's ``INDEXED BY``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from dgpu.coordinator.errors import StoreUnavailable

__all__ = [
    "Connection",
    "Database",
    "Dialect",
    "Row",
    "StoreUnavailable",
    "u64_sum",
    "u64_total",
]


class Row(Protocol):
    """A result row: by column name or position; ``dict(row)`` gives name → value."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


@dataclass(frozen=True)
class Dialect:
    name: Literal["sqlite", "postgresql"]

    @property
    def greatest(self) -> str:
        """The two-argument maximum: sqlite's scalar ``max``, PostgreSQL's ``greatest``."""
        return "max" if self.name == "sqlite" else "greatest"

    def indexed_by(self, index: str) -> str:
        """sqlite's planner hint (PostgreSQL plans by statistics and has no such clause)."""
        return f"INDEXED BY {index}" if self.name == "sqlite" else ""

    @property
    def now(self) -> str:
        """The database's own clock in (fractional) Unix seconds: one clock for every
        replica, whatever their hosts' clocks say (the settler lease is timed by it)."""
        if self.name == "sqlite":
            return "((julianday('now') - 2440587.5) * 86400.0)"
        return "extract(epoch FROM clock_timestamp())::float8"


SQLITE: Dialect = Dialect("sqlite")
POSTGRESQL: Dialect = Dialect("postgresql")


class Connection(Protocol):
    """Statements inside one transaction (:meth:`Database.transaction`)."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the affected row count."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def lock(self, key: str) -> None:
        """Serialise this transaction with every other one that locks ``key`` until it
        ends (PostgreSQL: a transaction advisory lock; sqlite's writers are serial already)."""


class Database(Protocol):
    """One database: single statements run as they come (each its own transaction), and
    multi-statement writes take :meth:`transaction`. Errors reaching the database raise
    :class:`StoreUnavailable` (the API answers 503)."""

    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[Connection]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def write_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


def u64_sum(expr: str, alias: str) -> str:
    """SQL columns ``<alias>_hi`` and ``<alias>_lo`` that :func:`u64_total` adds up exactly.

    sqlite's ``sum()`` of 64-bit integers raises "integer overflow" once the total passes
    2**63 - 1 (two receipts near the maximum were enough to make every page that sums them
    answer 500). Summing the high and low 32 bits apart cannot overflow below 2**31 rows,
    and Python adds the halves with unbounded integers. ``expr`` must be non-negative and
    each value at most 2**63 - 1, which the wire format guarantees for every amount
    (:data:`dgpu.protocol.messages.U64_MAX`). On PostgreSQL ``sum(bigint)`` is NUMERIC and
    exact already; the same two columns keep one SQL text for both engines."""
    return (
        f"coalesce(sum(({expr}) >> 32), 0) AS {alias}_hi,"
        f" coalesce(sum(({expr}) & 4294967295), 0) AS {alias}_lo"
    )


def u64_total(row: Row | None, alias: str) -> int:
    """The exact sum of :func:`u64_sum`'s two columns (0 without a row)."""
    if row is None:
        return 0
    return (int(row[f"{alias}_hi"]) << 32) + int(row[f"{alias}_lo"])
