"""Content-addressed files: every object is stored under the hex of its sha256."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio
from dgpu.node.net.bulk.tickets import BulkTicket
from dgpu.node.net.errors import BulkLimitExceeded, TicketRefused

CHUNK: Final = 1024 * 1024


def sha256_file(path: Path, *, limit: int | None = None) -> tuple[bytes, int]:
    """sha256 and size of a file (blocking: call it in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            size += len(chunk)
            if limit is not None and size > limit:
                raise BulkLimitExceeded(size, limit)
            digest.update(chunk)
    return digest.digest(), size


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: bytes) -> Path:
        return self.root / sha256.hex()

    def partial(self, sha256: bytes) -> Path:
        return self.root / f"{sha256.hex()}.part"

    def has(self, sha256: bytes) -> bool:
        return self.path(sha256).is_file()

    async def add_file(self, source: Path) -> tuple[bytes, int]:
        """Copy ``source`` into the store; its (sha256, size)."""

        def copy() -> tuple[bytes, int]:
            sha, size = sha256_file(source)
            target = self.path(sha)
            if not target.exists():
                tmp = self.root / f".{sha.hex()}.{os.getpid()}.tmp"
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
            return sha, size

        return await trio.to_thread.run_sync(copy)

    async def add_bytes(self, data: bytes) -> tuple[bytes, int]:
        sha = hashlib.sha256(data).digest()
        target = self.path(sha)
        if not target.exists():
            tmp = self.root / f".{sha.hex()}.{os.getpid()}.tmp"
            await trio.Path(tmp).write_bytes(data)
            os.replace(tmp, target)
        return sha, len(data)


@dataclass(frozen=True)
class BulkGrant:
    """What the negotiation allowed for one job: who may move bytes, how many, which way."""

    job_id: bytes
    renter: bytes
    max_bytes: int
    may_get: bool = True
    may_put: bool = False
    objects: frozenset[bytes] | None = None
    """sha256s the renter may get or put (``None``: any object)."""


class BulkGrants:
    """The server's authorisation policy: grants per job, set and revoked by the provider."""

    def __init__(self) -> None:
        self._grants: dict[bytes, BulkGrant] = {}

    def grant(self, grant: BulkGrant) -> None:
        self._grants[grant.job_id] = grant

    def revoke(self, job_id: bytes) -> None:
        self._grants.pop(job_id, None)

    def check(self, ticket: BulkTicket) -> BulkGrant:
        grant = self._grants.get(ticket.job_id)
        if grant is None:
            raise TicketRefused(f"no bulk grant for job {ticket.job_id.hex()}")
        if grant.renter != ticket.renter:
            raise TicketRefused("ticket signed by another key than the job's renter")
        if ticket.size > grant.max_bytes:
            raise BulkLimitExceeded(ticket.size, grant.max_bytes)
        if (ticket.op == "get" and not grant.may_get) or (ticket.op == "put" and not grant.may_put):
            raise TicketRefused(f"{ticket.op} is not allowed for this job")
        if grant.objects is not None and ticket.sha256 not in grant.objects:
            which = "an output" if ticket.op == "get" else "an agreed input"
            raise TicketRefused(f"object is not {which} of this job")
        return grant
