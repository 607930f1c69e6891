"""What the provider needs from parts other packages supply, as small interfaces.

* :class:`ProviderExecutor`: :class:`dgpu.node.executors.base.Executor` plus the orphan
  sweep a restarted provider runs (``DockerExecutor`` has both).
* :class:`OfferDesk`: the coordinator as a provider uses it (post offers and receipts).
* :class:`OutputHost`: where finished outputs are served to the renter from
  (:class:`~dgpu.node.provider.outputs.StreamOutputHost` over the node's network,
  :class:`~dgpu.node.provider.bulk_outputs.BulkOutputHost` over the bulk channel).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dgpu.node.executors.base import Job
from dgpu.node.executors.spec import JobSpec as ExecSpec
from dgpu.protocol.messages import Offer, Receipt


class ProviderExecutor(Protocol):
    @property
    def name(self) -> str: ...

    def open_job(self, spec: ExecSpec) -> AbstractAsyncContextManager[Job]: ...

    async def cleanup_orphans(self, owner: str, keep: Collection[str] = frozenset()) -> list[str]:
        """Remove what jobs of ``owner`` left behind, except those in ``keep``."""
        ...


class OfferDesk(Protocol):
    """The coordinator, as a provider uses it."""

    async def post_offer(self, offer: Offer) -> object: ...

    async def post_receipt(self, receipt: Receipt) -> object:
        """Hand the latest receipt of a channel to the coordinator's settlement batcher."""
        ...

    async def post_receipts(self, receipts: Sequence[Receipt]) -> list[dict[str, Any]]:
        """Hand many in one go; per receipt ``{"status": "accepted" | "refused", ...}``."""
        ...


@dataclass(frozen=True)
class HostedFile:
    path: str
    sha256: bytes
    size: int
    local: Path


class OutputHost(Protocol):
    """Serves a finished job's output files to its renter only."""

    @property
    def address(self) -> str:
        """What the renter dials to fetch (put in the Quote's ``bulk_addr``)."""
        ...

    def publish(
        self, job_id: bytes, renter: bytes, files: Sequence[HostedFile], *, max_bytes: int
    ) -> None:
        """Let ``renter`` fetch ``files`` (none larger than ``max_bytes``, the agreed
        output limit) until :meth:`withdraw`."""
        ...

    def withdraw(self, job_id: bytes) -> None: ...
