"""Job inputs over the bulk channel: received before the job starts, mounted read-only.

The same :class:`~dgpu.node.net.bulk.ContentStore` and grants as the outputs
(:mod:`dgpu.node.provider.bulk_outputs`), the other way: once a job is agreed,
:meth:`InputDesk.expect` lets its renter (only) ``put`` exactly the objects its JobRequest
listed — the tree was already checked (paths, symlinks, the agreed total) before the quote
(:func:`dgpu.protocol.inputs.check_inputs`), so a hostile tree never gets this far. The
renter pushes each file with a signed ticket (an interrupted push resumes from the bytes
the server kept), then funds the channel. When the channel is verified
:meth:`InputDesk.materialise` builds the tree in a folder of its own (hard links from the
store, files read-only) that the executor mounts read-only at ``/in``; a tree with missing
objects is refused. :meth:`InputDesk.drop` forgets an abandoned job's uploads.

Transfer time is not billed: the bytes move before the channel is funded and the meter
starts with the container (see :mod:`dgpu.protocol.inputs`).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

import trio
from dgpu.node.net.bulk import BulkGrant
from dgpu.node.provider.bulk_outputs import BulkOutputHost, place_file
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.messages import InputFile

log = logging.getLogger(__name__)


class InputsMissing(DgpuError):
    """The renter funded a job without uploading every input it listed."""


class InputDesk:
    """Which uploads each agreed job may make, and their trees once funded."""

    def __init__(self, host: BulkOutputHost, root: Path) -> None:
        self.host = host
        self.root = root
        self._expected: dict[bytes, frozenset[bytes]] = {}

    def expect(self, job_id: bytes, renter: bytes, files: Sequence[InputFile]) -> None:
        """Let ``renter`` put exactly the contents ``files`` name (none larger than the
        largest of them)."""
        objects = frozenset(f.sha256 for f in files if not f.link)
        if not objects:
            return
        self._expected[job_id] = objects
        largest = max(f.size for f in files if not f.link)
        self.host.grants.grant(
            BulkGrant(
                job_id=job_id,
                renter=renter,
                max_bytes=largest,
                may_get=False,
                may_put=True,
                objects=objects,
            )
        )

    def missing(self, job_id: bytes) -> list[bytes]:
        return [sha for sha in self._expected.get(job_id, ()) if not self.host.store.has(sha)]

    async def materialise(self, job_id: bytes, files: Sequence[InputFile]) -> Path:
        """The job's input tree, built from the store; its uploads are then dropped."""
        missing = self.missing(job_id)
        if missing:
            raise InputsMissing(
                f"{len(missing)} of the listed inputs were not uploaded (first: {missing[0].hex()})"
            )
        dest = self.root / job_id.hex()
        await trio.to_thread.run_sync(self._build, dest, list(files))
        self.drop(job_id)
        log.info("job %s: %d inputs ready in %s", job_id.hex(), len(files), dest)
        return dest

    def _build(self, dest: Path, files: list[InputFile]) -> None:
        if dest.exists():
            remove_tree(dest)
        dest.mkdir(parents=True)
        for f in files:
            target = dest / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.link:
                os.symlink(f.link, target)
                continue
            place_file(self.host.store.path(f.sha256), target)
            os.chmod(target, 0o444)
        for folder, _dirs, _files in os.walk(dest):
            # readable by the container's user whoever it is; the mount is read-only anyway
            os.chmod(folder, 0o555)  # noqa: S103

    def drop(self, job_id: bytes) -> None:
        """Revoke the job's upload grant and remove what it uploaded (or half uploaded)."""
        objects = self._expected.pop(job_id, frozenset())
        if not objects:
            return
        self.host.grants.revoke(job_id)
        still: set[bytes] = set().union(*self._expected.values())
        for sha in objects - still:
            if self.host.holds(sha):
                continue  # also someone's published output
            self.host.store.path(sha).unlink(missing_ok=True)
            self.host.store.partial(sha).unlink(missing_ok=True)


def remove_tree(path: Path) -> None:
    """Remove an input tree made read-only by :meth:`InputDesk._build` (blocking)."""
    if not path.is_dir():
        return
    for folder, _dirs, _files in os.walk(path):
        os.chmod(folder, stat.S_IRWXU)
    shutil.rmtree(path)
