"""The bulk channel's few framed headers (4-byte big-endian length + MessagePack).

::

    client ─ BulkRequest(ticket, offset) ─▶ server
    server ─ BulkReply(code, size, offset) ─▶ client
    get:  server ─ bytes [offset, size) ─▶ client          (client verifies sha256)
    put:  client ─ bytes [offset, size) ─▶ server ─ BulkReply(code) ─▶ client
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Annotated, Final, Literal, TypeVar

import msgspec
import trio
from dgpu.node.net.bulk.tickets import U64, BulkTicket
from dgpu.node.net.errors import BulkError, FrameTooLarge, NetTimeout, StreamClosed
from dgpu.node.net.framing import ByteStream
from msgspec import Meta

MAX_HEADER_BYTES: Final = 4096
T = TypeVar("T")


class BulkRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    ticket: BulkTicket
    offset: U64 = 0
    """Bytes the client already has (get) — the server says where to resume a put."""


ReplyCode = Literal["ok", "refused", "limit", "integrity", "unknown_object", "bad_request"]


class BulkReply(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: ReplyCode = "ok"
    error: Annotated[str, Meta(max_length=256)] = ""
    size: U64 = 0
    offset: U64 = 0


async def send_header(stream: ByteStream, header: BulkRequest | BulkReply) -> None:
    data = msgspec.msgpack.encode(header)
    await stream.send_all(struct.pack(">I", len(data)) + data)


async def receive_exactly(stream: ByteStream, count: int, buffer: bytearray) -> bytes:
    """``count`` bytes, using and refilling ``buffer`` (bytes read past them stay there)."""
    while len(buffer) < count:
        data = await stream.receive_some(max(65536, count - len(buffer)))
        if not data:
            raise StreamClosed(f"stream ended {count - len(buffer)} bytes short")
        buffer += data
    out = bytes(buffer[:count])
    del buffer[:count]
    return out


async def receive_header(
    stream: ByteStream, kind: type[T], buffer: bytearray, *, timeout_s: float
) -> T:
    with trio.move_on_after(timeout_s):
        (length,) = struct.unpack(">I", await receive_exactly(stream, 4, buffer))
        if length > MAX_HEADER_BYTES:
            raise FrameTooLarge(length, MAX_HEADER_BYTES)
        data = await receive_exactly(stream, length, buffer)
        try:
            return msgspec.msgpack.decode(data, type=kind)
        except msgspec.DecodeError as exc:  # ValidationError is a subclass
            raise BulkError(f"bad bulk header: {exc}") from exc
    raise NetTimeout("bulk header", timeout_s)


BATCH: Final = 4 * 1024 * 1024


async def receive_body(
    stream: ByteStream,
    buffer: bytearray,
    size: int,
    write: Callable[[bytes], object],
    *,
    idle_timeout_s: float,
    what: str,
) -> None:
    """Receive exactly ``size`` body bytes (some may be in ``buffer`` already) and hand
    them to ``write`` in a worker thread, in batches of up to :data:`BATCH` bytes. Never
    reads past ``size``; raises ``StreamClosed`` if the stream ends first."""
    pending = bytearray(buffer[:size])
    del buffer[:size]
    remaining = size - len(pending)
    while remaining:
        with trio.move_on_after(idle_timeout_s) as scope:
            data = await stream.receive_some(min(BATCH, remaining))
        if scope.cancelled_caught:
            raise NetTimeout(what, idle_timeout_s)
        if not data:
            if pending:
                await trio.to_thread.run_sync(write, bytes(pending))
            raise StreamClosed(f"{what} ended {remaining} bytes short (kept to resume)")
        pending += data
        remaining -= len(data)
        if len(pending) >= BATCH:
            await trio.to_thread.run_sync(write, bytes(pending))
            pending.clear()
    if pending:
        await trio.to_thread.run_sync(write, bytes(pending))


class TcpByteStream:
    """A :class:`ByteStream` over a TCP connection (the unencrypted bulk channel)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def receive_some(self, max_bytes: int) -> bytes:
        return bytes(await self._stream.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def reset(self) -> None:
        await trio.aclose_forcefully(self._stream)
