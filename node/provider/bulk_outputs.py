"""Output files over the authorised bulk channel (:mod:`dgpu.node.net.bulk`), for real nodes.

:func:`open_bulk_output_host` runs a bulk server (libp2p streams of the node's network, or
plain TCP where asked; one object per stream) over a
:class:`~dgpu.node.net.bulk.ContentStore` of its own, in a nursery it owns, and yields a
:class:`BulkOutputHost` whose ``address`` goes into every Quote's ``bulk_addr``::

    async with open_bulk_output_host(identity, data_dir / "bulk") as outputs:
        provider = Provider(..., outputs=outputs, outputs_dir=data_dir / "outputs")

Publishing a job's outputs hard-links each file into the store (a copy when the two
directories are on different file systems) and grants the job's renter exactly those
objects, up to the agreed byte limit; the renter then fetches each with a ticket it signs
(:class:`dgpu.node.renter.bulk_outputs.BulkOutputFetcher`). Withdrawing revokes the grant
and removes the objects no other published job still holds.

The bulk code moves bytes to and from disk in worker threads, which lets virtual time leap
under trio's autojump ``MockClock`` (trio issue #456): simulations and memory-network tests
keep :class:`~dgpu.node.provider.outputs.StreamOutputHost`.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio
from dgpu.node.net.bulk import (
    BulkGrant,
    BulkGrants,
    BulkServerConfig,
    ContentStore,
    RawServing,
    bulk_addr,
    parse_bulk_addr,
    serve_bulk,
    serve_bulk_on,
)
from dgpu.node.provider.ports import HostedFile
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity

log = logging.getLogger(__name__)


class BulkOutputHost:
    """An :class:`~dgpu.node.provider.ports.OutputHost` over the bulk channel.

    Made by :func:`open_bulk_output_host`, which also runs the server that reads the
    store and checks tickets against the grants kept here."""

    def __init__(self, store: ContentStore, grants: BulkGrants, address: str) -> None:
        self.store = store
        self.grants = grants
        self._address = address
        self._jobs: dict[bytes, frozenset[bytes]] = {}
        self._holders: dict[bytes, set[bytes]] = {}

    @property
    def address(self) -> str:
        return self._address

    def publish(
        self, job_id: bytes, renter: bytes, files: Sequence[HostedFile], *, max_bytes: int
    ) -> None:
        """Put ``files`` in the store and let ``renter`` (only) get exactly those objects,
        none larger than ``max_bytes`` (the limit agreed in the negotiation)."""
        self.withdraw(job_id)
        objects = frozenset(f.sha256 for f in files)
        for f in files:
            if not self.store.has(f.sha256):
                place_file(f.local, self.store.path(f.sha256))
            self._holders.setdefault(f.sha256, set()).add(job_id)
        self._jobs[job_id] = objects
        self.grants.grant(
            BulkGrant(job_id=job_id, renter=renter, max_bytes=max_bytes, objects=objects)
        )
        log.info(
            "job %s: %d outputs (%d bytes) published on %s",
            job_id.hex(),
            len(files),
            sum(f.size for f in files),
            self._address,
        )

    def withdraw(self, job_id: bytes) -> None:
        """Revoke the job's grant; drop the objects no other published job holds."""
        self.grants.revoke(job_id)
        for sha in self._jobs.pop(job_id, frozenset()):
            holders = self._holders.get(sha, set())
            holders.discard(job_id)
            if not holders:
                self._holders.pop(sha, None)
                self.store.path(sha).unlink(missing_ok=True)

    def holds(self, sha256: bytes) -> bool:
        """Whether a published job holds this object."""
        return sha256 in self._holders

    def published(self, job_id: bytes) -> frozenset[bytes]:
        """The sha256s of the objects the job's renter may get now."""
        return self._jobs.get(job_id, frozenset())


def place_file(source: Path, target: Path) -> None:
    """``source`` under ``target``'s name: a hard link, or a copy across file systems."""
    try:
        os.link(source, target)
    except FileExistsError:
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        log.info("cannot hard-link %s into the bulk store (%s); copying", source, exc)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def _unspecified(host: str) -> bool:
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _empty(root: Path) -> None:
    """Remove what a previous life left in the store (no grant reaches it any more)."""
    for entry in root.iterdir():
        if entry.is_file():
            entry.unlink()


@asynccontextmanager
async def open_bulk_output_host(
    identity: Identity,
    root: Path,
    config: BulkServerConfig | None = None,
    *,
    announce_host: str | None = None,
    network: RawServing | None = None,
) -> AsyncIterator[BulkOutputHost]:
    """Serve the bulk channel over a store in ``root`` (emptied first: this host owns
    it) until the block exits: as libp2p streams of ``network`` when given (encrypted,
    authenticated, over any connection the renter has: the default of real nodes), else
    as plain TCP on ``config.host:config.port``.

    ``announce_host`` is the host renters dial for TCP (put in the Quote's address); it
    is required when listening on every interface (``0.0.0.0``)."""
    if network is not None:
        store = ContentStore(root)
        await trio.to_thread.run_sync(_empty, root)
        grants = BulkGrants()
        address = serve_bulk_on(network, store, grants, identity, config)
        log.info("bulk outputs served as libp2p streams (%s)", address)
        yield BulkOutputHost(store, grants, address)
        return
    config = config or BulkServerConfig()
    if announce_host is None and _unspecified(config.host):
        raise DgpuError("listening for bulk on every interface: name the address to announce")
    store = ContentStore(root)
    await trio.to_thread.run_sync(_empty, root)
    grants = BulkGrants()
    async with trio.open_nursery() as nursery:
        listening: str = await nursery.start(partial(serve_bulk, store, grants, identity, config))
        address = listening
        if announce_host is not None:
            address = bulk_addr(announce_host, parse_bulk_addr(listening)[1])
        log.info("bulk outputs served on %s (announced as %s)", listening, address)
        try:
            yield BulkOutputHost(store, grants, address)
        finally:
            nursery.cancel_scope.cancel()
