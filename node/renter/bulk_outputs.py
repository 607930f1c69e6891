"""Fetching output files over the provider's bulk channel (:mod:`dgpu.node.net.bulk`).

For each file of the signed manifest the renter signs a ticket (its job, the provider as
server, ``get``, the file's sha256 and size) and downloads the object from the Quote's
``bulk_addr``; the bytes are checked against that sha256 and size before they take the
file's name. A connection that drops part way is resumed once from the bytes already
written. Quotes without a bulk address go to the ``fallback`` fetcher (the node's own
network, :class:`~dgpu.node.renter.outputs.StreamOutputFetcher`).

The bulk client writes to disk in worker threads (which lets virtual time leap under
trio's autojump ``MockClock``, trio issue #456): this fetcher is for real nodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio
from dgpu.node.net.bulk import BULK_PROTOCOL, fetch, make_ticket
from dgpu.node.net.errors import (
    BulkError,
    IntegrityError,
    NetTimeout,
    StreamClosed,
    StreamReset,
    TicketRefused,
)
from dgpu.node.net.framing import ByteStream
from dgpu.node.renter.errors import OutputMismatch
from dgpu.node.renter.outputs import OutputFetcher
from dgpu.protocol.identity import Identity, peer_id_of
from dgpu.protocol.messages import OutputFile, Quote

log = logging.getLogger(__name__)

TICKET_TTL_S: Final = 3600
READ_TIMEOUT_S: Final = 30.0
_DROPPED = (StreamClosed, StreamReset, NetTimeout, trio.BrokenResourceError)


@dataclass
class BulkFetchStats:
    """What went over the bulk channel (for progress output and tests)."""

    files: int = 0
    bytes: int = 0
    resumed: int = 0
    via_fallback: int = 0
    seconds: float = 0.0
    connection: str = ""
    """How the provider was reached when the outputs moved: ``direct`` or ``relayed``
    (empty when no output moved over the bulk channel)."""


class BulkOutputFetcher:
    """:class:`~dgpu.node.renter.outputs.OutputFetcher` over the bulk channel."""

    def __init__(
        self,
        identity: Identity,
        *,
        fallback: OutputFetcher | None = None,
        clock: Callable[[], float] = time.time,
        timeout_s: float = READ_TIMEOUT_S,
        ticket_ttl_s: int = TICKET_TTL_S,
        open_stream: Callable[[str, str], Awaitable[ByteStream]] | None = None,
        connection_kind: Callable[[str], str] | None = None,
    ) -> None:
        """``open_stream(peer_id, protocol)`` opens a raw libp2p stream (the node's
        network): needed for quotes whose ``bulk_addr`` is the libp2p bulk protocol."""
        self.open_stream = open_stream
        self.connection_kind = connection_kind
        self.identity = identity
        self.fallback = fallback
        self.clock = clock
        self.timeout_s = timeout_s
        self.ticket_ttl_s = ticket_ttl_s
        self.stats = BulkFetchStats()

    async def fetch(self, *, quote: Quote, file: OutputFile, dest: Path) -> None:
        if not quote.bulk_addr:
            if self.fallback is None:
                raise OutputMismatch(file.path, "the provider named no bulk address")
            await self.fallback.fetch(quote=quote, file=file, dest=dest)
            self.stats.via_fallback += 1
            return
        if quote.max_output_bytes and file.size > quote.max_output_bytes:
            raise OutputMismatch(file.path, f"{file.size} bytes exceed the agreed limit")
        partial = dest.with_name(dest.name + ".part")
        ticket = make_ticket(
            self.identity,
            job_id=quote.job_id,
            server=quote.provider,
            op="get",
            sha256=file.sha256,
            size=file.size,
            expires_at=int(self.clock()) + self.ticket_ttl_s,
        )
        opener = None
        if self.open_stream is not None:
            open_stream, peer = self.open_stream, peer_id_of(quote.provider)

            async def opener() -> ByteStream:
                stream = await open_stream(peer, BULK_PROTOCOL)
                if self.connection_kind is not None:
                    self.stats.connection = self.connection_kind(peer)
                return stream

        started = trio.current_time()
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial.unlink(missing_ok=True)  # resume only what this call wrote
            try:
                await fetch(
                    quote.bulk_addr, ticket, dest, timeout_s=self.timeout_s, open_stream=opener
                )
            except _DROPPED as exc:
                log.info("bulk fetch of %s dropped (%s); resuming", file.path, exc)
                self.stats.resumed += 1
                await fetch(
                    quote.bulk_addr, ticket, dest, timeout_s=self.timeout_s, open_stream=opener
                )
            size = (await trio.Path(dest).stat()).st_size
            if size != file.size:
                await trio.Path(dest).unlink()
                raise OutputMismatch(file.path, f"{size} bytes arrived, {file.size} announced")
        except TicketRefused as exc:
            raise OutputMismatch(file.path, f"the provider refused ({exc})") from exc
        except IntegrityError as exc:
            raise OutputMismatch(file.path, str(exc)) from exc
        except BulkError as exc:
            raise OutputMismatch(file.path, f"bulk transfer failed: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        self.stats.files += 1
        self.stats.bytes += file.size
        self.stats.seconds += trio.current_time() - started
