"""Bulk client: fetch (verified, resumable) and push (resumable) one object per call.

``addr`` is a TCP address (``/ip4/HOST/tcp/PORT``) or, with ``open_stream`` (a
callable that opens a :data:`~dgpu.node.net.bulk.server.BULK_PROTOCOL` stream to the
provider over libp2p), the protocol name itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import trio
from dgpu.node.net.bulk.server import over_libp2p, parse_bulk_addr
from dgpu.node.net.bulk.store import CHUNK
from dgpu.node.net.bulk.tickets import BulkTicket
from dgpu.node.net.bulk.wire import (
    BulkReply,
    BulkRequest,
    TcpByteStream,
    receive_body,
    receive_header,
    send_header,
)
from dgpu.node.net.errors import (
    BulkError,
    IntegrityError,
    NetError,
    NetTimeout,
    PeerUnreachable,
    TicketRefused,
)
from dgpu.node.net.framing import ByteStream

OpenStream = Callable[[], Awaitable[ByteStream]]

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S: Final = 30.0


def _raise_for(reply: BulkReply) -> None:
    if reply.code == "ok":
        return
    error = {"refused": TicketRefused, "integrity": IntegrityError}.get(reply.code, BulkError)
    if reply.code == "limit":
        raise BulkError(f"bulk server: over the agreed limit: {reply.error}")
    raise error(f"bulk server: {reply.code}: {reply.error}")


async def _connect(addr: str, timeout_s: float, open_stream: OpenStream | None) -> ByteStream:
    with trio.move_on_after(timeout_s):
        if over_libp2p(addr):
            if open_stream is None:
                raise BulkError("a libp2p bulk address needs a network to open the stream")
            return await open_stream()
        host, port = parse_bulk_addr(addr)
        try:
            return TcpByteStream(await trio.open_tcp_stream(host, port))
        except OSError as exc:
            raise PeerUnreachable(addr, str(exc)) from exc
    raise NetTimeout(f"connect to bulk server {addr}", timeout_s)


async def fetch(
    addr: str,
    ticket: BulkTicket,
    dest: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    open_stream: OpenStream | None = None,
) -> Path:
    """Download the ticket's object to ``dest``, verified against its sha256 and size.

    Bytes arrive in ``dest`` + ``.part`` first; a later call resumes from there. On a
    mismatch the partial file is deleted and :class:`IntegrityError` raised.
    """
    partial = dest.with_name(dest.name + ".part")
    have, digest = await trio.to_thread.run_sync(_resume_point, partial, ticket.size)
    stream = await _connect(addr, timeout_s, open_stream)
    async with _closing(stream):
        await send_header(stream, BulkRequest(ticket=ticket, offset=have))
        buffer = bytearray()
        reply = await receive_header(stream, BulkReply, buffer, timeout_s=timeout_s)
        _raise_for(reply)
        if reply.size != ticket.size:
            raise IntegrityError(f"server has {reply.size} bytes, the ticket says {ticket.size}")
        if reply.offset != have:
            raise BulkError(f"server resumes at {reply.offset}, we have {have}")
        with partial.open("ab") as f:

            def write(data: bytes) -> None:
                f.write(data)
                digest.update(data)

            await receive_body(
                stream,
                buffer,
                ticket.size - have,
                write,
                idle_timeout_s=timeout_s,
                what="bulk download",
            )
    if digest.digest() != ticket.sha256:
        await trio.Path(partial).unlink()
        raise IntegrityError(f"downloaded bytes do not hash to {ticket.sha256.hex()}")
    os.replace(partial, dest)
    return dest


async def push(
    addr: str,
    ticket: BulkTicket,
    source: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    open_stream: OpenStream | None = None,
) -> None:
    """Upload ``source`` (whose sha256 and size the ticket names); the server verifies it
    and says where to resume if an earlier upload stopped part way."""
    size = (await trio.Path(source).stat()).st_size
    if size != ticket.size:
        raise BulkError(f"{source} has {size} bytes, the ticket says {ticket.size}")
    stream = await _connect(addr, timeout_s, open_stream)
    async with _closing(stream):
        await send_header(stream, BulkRequest(ticket=ticket))
        buffer = bytearray()
        reply = await receive_header(stream, BulkReply, buffer, timeout_s=timeout_s)
        _raise_for(reply)
        async with await trio.open_file(source, "rb") as f:
            await f.seek(reply.offset)
            while chunk := await f.read(CHUNK):
                with trio.fail_after(timeout_s):
                    await stream.send_all(chunk)
        _raise_for(await receive_header(stream, BulkReply, buffer, timeout_s=timeout_s))


def _resume_point(partial: Path, size: int) -> tuple[int, hashlib._Hash]:
    """Bytes already downloaded (a partial file larger than the object is discarded)
    and the hash of them."""
    digest = hashlib.sha256()
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        return 0, digest
    with partial.open("rb") if have else open(os.devnull, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return have, digest


@asynccontextmanager
async def _closing(stream: ByteStream) -> AsyncIterator[ByteStream]:
    try:
        yield stream
    except BaseException:
        await stream.reset()
        raise
    with trio.move_on_after(2) as scope:
        scope.shield = True
        try:
            await stream.aclose()
        except (NetError, OSError, trio.BrokenResourceError):
            log.debug("closing a bulk stream failed", exc_info=True)
