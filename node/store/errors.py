"""Errors of the node's local store.

::

    DgpuError
    └── StoreError            root of dgpu.node.store (sqlite failures are converted to it)
        ├── SchemaTooNew      the database was written by a newer dgpu
        ├── RecordNotFound    a job or channel the caller named is not in the store
        └── StoreUnusable     the database cannot be written (or read) at all, for a
            │                 reason outside dgpu that the operator must fix
            ├── StoreFull         disk full (ENOSPC)
            ├── StoreReadOnly     read-only file or filesystem (EROFS, EACCES)
            ├── StoreLocked       another process holds the database's write lock
            └── StoreCorrupt      not a database, or a damaged one

``StoreUnusable`` says in words what is wrong (``str(exc)`` starts with it) and names
the database's path: a provider stops taking jobs on it and tells the operator.
"""

from __future__ import annotations

import sqlite3

from dgpu.protocol.errors import DgpuError


class StoreError(DgpuError):
    """Root of the errors of :mod:`dgpu.node.store`."""


class SchemaTooNew(StoreError):
    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            f"{path}: schema version {found} is newer than this dgpu knows ({known}); upgrade dgpu"
        )
        self.found = found
        self.known = known


class RecordNotFound(StoreError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is not in the store")
        self.what = what


class StoreUnusable(StoreError):
    """The database cannot be used; ``what`` says why in words, ``path`` which one."""

    what = "the node store cannot be written"

    def __init__(self, path: str, action: str, detail: str) -> None:
        super().__init__(f"{self.what}: {path}: {action}: {detail}")
        self.path = path
        self.action = action
        self.detail = detail


class StoreFull(StoreUnusable):
    what = "disk full (ENOSPC): the node store cannot grow"


class StoreReadOnly(StoreUnusable):
    what = "the node store is read-only (read-only filesystem or no write permission)"


class StoreLocked(StoreUnusable):
    what = "the node store is locked by another process"


class StoreCorrupt(StoreUnusable):
    what = "the node store is damaged or not a database"


# sqlite's primary result codes (the low byte of the extended code)
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 13, 14, 26
_SQLITE_IOERR = 10
_BY_CODE: dict[int, type[StoreUnusable]] = {
    _SQLITE_FULL: StoreFull,
    _SQLITE_READONLY: StoreReadOnly,
    _SQLITE_CANTOPEN: StoreReadOnly,
    _SQLITE_BUSY: StoreLocked,
    _SQLITE_LOCKED: StoreLocked,
    _SQLITE_CORRUPT: StoreCorrupt,
    _SQLITE_NOTADB: StoreCorrupt,
    _SQLITE_IOERR: StoreUnusable,
}


def convert(exc: sqlite3.Error, path: str, action: str) -> StoreError:
    """The typed error for a sqlite failure (the one place they are told apart)."""
    code = getattr(exc, "sqlite_errorcode", None)
    detail = f"{exc} ({getattr(exc, 'sqlite_errorname', 'no code')})"
    cls = _BY_CODE.get(code & 0xFF) if isinstance(code, int) else None
    if cls is not None:
        return cls(path, action, detail)
    return StoreError(f"{path}: {action}: {exc}")
