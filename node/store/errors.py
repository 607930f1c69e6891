"""Errors of the node's local store.

::

    DgpuError
    └── StoreError            root of dgpu.node.store (sqlite failures are converted to it)
        ├── SchemaTooNew      the database was written by a newer dgpu
        └── RecordNotFound    a job or channel the caller named is not in the store
"""

from __future__ import annotations

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
