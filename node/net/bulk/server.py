"""The bulk server: serves and receives content-addressed objects over a byte stream.

The stream is a libp2p stream of :data:`BULK_PROTOCOL` (Noise: encrypted, and the renter
is authenticated by its peer ID as well as by its ticket) — :func:`serve_bulk_on` — or,
where an operator asks for it, a plain TCP connection (:func:`serve_bulk`: unencrypted,
for trusted LANs and benchmarks only).

Each connection or stream moves one object: a header with a renter-signed ticket (checked against
the provider's grants), then raw bytes. Every read has a deadline; the size announced in
the ticket (and allowed by the grant) is never exceeded; an upload is verified against its
sha256 before it enters the store, and resumes where a previous attempt stopped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final, NoReturn, Protocol

import trio
from dgpu.node.net.bulk.store import BulkGrants, ContentStore, sha256_file
from dgpu.node.net.bulk.tickets import BulkTicket, check_ticket
from dgpu.node.net.bulk.wire import (
    BATCH,
    BulkReply,
    BulkRequest,
    ReplyCode,
    TcpByteStream,
    receive_body,
    receive_header,
    send_header,
)
from dgpu.node.net.errors import (
    BulkError,
    BulkLimitExceeded,
    IntegrityError,
    NetError,
    TicketRefused,
)
from dgpu.node.net.framing import ByteStream
from dgpu.protocol.identity import Identity

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)
_ERRORS: Final[dict[type[BulkError], ReplyCode]] = {
    TicketRefused: "refused",
    BulkLimitExceeded: "limit",
    IntegrityError: "integrity",
}


@dataclass(frozen=True)
class BulkServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    """Longest wait for the next chunk of bytes (either way)."""
    max_connections: int = 32


BULK_PROTOCOL: Final = "/dgpu/bulk/1.0.0"
"""The libp2p protocol of the bulk channel; as a Quote's ``bulk_addr`` it means "open a
stream of this protocol to the quoting provider" (over whatever connection exists)."""


def over_libp2p(addr: str) -> bool:
    """Whether a ``bulk_addr`` names the libp2p bulk protocol (not a TCP address)."""
    return addr == BULK_PROTOCOL


def bulk_addr(host: str, port: int) -> str:
    """The address form put in ``Quote.bulk_addr``."""
    return f"/ip4/{host}/tcp/{port}"


def parse_bulk_addr(addr: str) -> tuple[str, int]:
    parts = addr.split("/")
    if len(parts) != 5 or parts[0] or parts[1] != "ip4" or parts[3] != "tcp":
        raise BulkError(f"not a bulk address: {addr!r}")
    try:
        return parts[2], int(parts[4])
    except ValueError as exc:
        raise BulkError(f"not a bulk address: {addr!r}") from exc


class BulkServer:
    def __init__(
        self,
        store: ContentStore,
        grants: BulkGrants,
        identity: Identity,
        config: BulkServerConfig,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.grants = grants
        self.config = config
        self._server_key = identity.public_key
        self._clock = clock
        self._limiter = trio.CapacityLimiter(config.max_connections)
        self.served = 0
        self.refused = 0

    async def handle(self, stream: ByteStream) -> None:
        """One connection; nothing escapes (a bad client never stops the server)."""
        try:
            self._limiter.acquire_nowait()
        except trio.WouldBlock:
            log.warning("too many bulk connections; closing one")
            await stream.aclose()
            return
        try:
            await self._handle(stream)
        except BulkError as exc:
            self.refused += 1
            log.info("bulk request refused: %s", exc)
            await _try_reply(stream, BulkReply(code=_code(exc), error=str(exc)[:256]))
        except (NetError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("bulk connection failed", exc_info=True)
        except Exception:  # connection boundary: a bug must not stop the server
            log.exception("bulk connection handler failed")
        finally:
            self._limiter.release()
            with trio.move_on_after(2) as scope:
                scope.shield = True
                try:
                    await stream.aclose()
                except (NetError, OSError, trio.BrokenResourceError):
                    log.debug("closing a bulk stream failed", exc_info=True)

    async def _handle(self, stream: ByteStream) -> None:
        buffer = bytearray()
        request = await receive_header(
            stream, BulkRequest, buffer, timeout_s=self.config.header_timeout_s
        )
        ticket = check_ticket(request.ticket, server=self._server_key, now=int(self._clock()))
        self.grants.check(ticket)
        if ticket.op == "get":
            await self._send_object(stream, ticket, request.offset)
        else:
            await self._receive_object(stream, ticket, buffer)
        self.served += 1

    async def _send_object(self, stream: ByteStream, ticket: BulkTicket, offset: int) -> None:
        path = self.store.path(ticket.sha256)
        try:
            size = (await trio.Path(path).stat()).st_size
        except FileNotFoundError:
            await send_header(stream, BulkReply(code="unknown_object", error="no such object"))
            return
        if size != ticket.size:
            raise TicketRefused(f"object has {size} bytes, the ticket says {ticket.size}")
        offset = min(offset, size)
        await send_header(stream, BulkReply(size=size, offset=offset))
        async with await trio.open_file(path, "rb") as f:
            await f.seek(offset)
            while chunk := await f.read(BATCH):
                with trio.fail_after(self.config.idle_timeout_s):
                    await stream.send_all(chunk)

    async def _receive_object(
        self, stream: ByteStream, ticket: BulkTicket, buffer: bytearray
    ) -> None:
        if self.store.has(ticket.sha256):
            await send_header(stream, BulkReply(size=ticket.size, offset=ticket.size))
            await send_header(stream, BulkReply(size=ticket.size, offset=ticket.size))
            return
        part = trio.Path(self.store.partial(ticket.sha256))
        have = (await part.stat()).st_size if await part.exists() else 0
        if have > ticket.size:
            await part.unlink()
            have = 0
        await send_header(stream, BulkReply(size=ticket.size, offset=have))
        with self.store.partial(ticket.sha256).open("ab") as f:
            await receive_body(
                stream,
                buffer,
                ticket.size - have,
                f.write,
                idle_timeout_s=self.config.idle_timeout_s,
                what="bulk upload",
            )
        digest, size = await trio.to_thread.run_sync(
            partial(sha256_file, self.store.partial(ticket.sha256))
        )
        if digest != ticket.sha256 or size != ticket.size:
            await part.unlink()
            raise IntegrityError("uploaded bytes do not match the ticket's sha256")
        os.replace(self.store.partial(ticket.sha256), self.store.path(ticket.sha256))
        await send_header(stream, BulkReply(size=size, offset=size))


def _code(exc: BulkError) -> ReplyCode:
    for kind, code in _ERRORS.items():
        if isinstance(exc, kind):
            return code
    return "bad_request"


async def _try_reply(stream: ByteStream, reply: BulkReply) -> None:
    with trio.move_on_after(2):
        try:
            await send_header(stream, reply)
        except (NetError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("could not tell the bulk client why", exc_info=True)


async def serve_bulk(
    store: ContentStore,
    grants: BulkGrants,
    identity: Identity,
    config: BulkServerConfig | None = None,
    *,
    clock: Callable[[], float] = time.time,
    task_status: TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve until cancelled; ``await nursery.start(serve_bulk, ...)`` returns the address
    to put in ``Quote.bulk_addr`` (``/ip4/HOST/tcp/PORT``)."""
    config = config or BulkServerConfig()
    server = BulkServer(store, grants, identity, config, clock)
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    host, port = listeners[0].socket.getsockname()[:2]
    task_status.started(bulk_addr(host, port))

    async def handle(stream: trio.SocketStream) -> None:
        await server.handle(TcpByteStream(stream))

    await trio.serve_listeners(handle, listeners)
    raise AssertionError("serve_listeners returned")  # pragma: no cover


class RawServing(Protocol):
    """A network that hands whole inbound byte streams of a protocol to a handler
    (:meth:`dgpu.node.net.libp2p.Libp2pNetwork.serve_raw`)."""

    def serve_raw(
        self, protocol: str, handler: Callable[[ByteStream, str], Awaitable[None]]
    ) -> None: ...


def serve_bulk_on(
    network: RawServing,
    store: ContentStore,
    grants: BulkGrants,
    identity: Identity,
    config: BulkServerConfig | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> str:
    """Serve the bulk channel as :data:`BULK_PROTOCOL` streams of ``network`` (encrypted
    and authenticated by Noise); returns the ``bulk_addr`` to quote. The network runs the
    handlers: it stops serving when it closes."""
    server = BulkServer(store, grants, identity, config or BulkServerConfig(), clock)

    async def handle(stream: ByteStream, peer: str) -> None:
        await server.handle(stream)

    network.serve_raw(BULK_PROTOCOL, handle)
    return BULK_PROTOCOL
