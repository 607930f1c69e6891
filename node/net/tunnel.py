"""TCP tunnels to a job's container ports over the peers' libp2p connection.

One :data:`TUNNEL_PROTOCOL` stream per TCP connection, opened by the renter::

    renter ─ TunnelOpen(job_id, port) ─▶ provider    (4-byte length + MessagePack)
    provider ─ TunnelReply(code, error) ─▶ renter
    then raw bytes both ways until each side half-closes

The stream is Noise-encrypted and its remote peer authenticated, over whatever connection
the two nodes have (direct, hole-punched or relayed): the provider accepts it only from the
peer of the job's renter, for a port agreed in the Quote, while the job runs.
"""

from __future__ import annotations

import logging
import struct
from typing import Annotated, Final, Literal, Protocol, TypeVar

import msgspec
import trio
from dgpu.node.net.bulk.wire import MAX_HEADER_BYTES, receive_exactly
from dgpu.node.net.errors import BulkError, FrameTooLarge, NetError, NetTimeout
from dgpu.node.net.framing import ByteStream
from msgspec import Meta

log = logging.getLogger(__name__)

TUNNEL_PROTOCOL: Final = "/dgpu/tunnel/1.0.0"
CHUNK: Final = 64 * 1024
T = TypeVar("T")


class TunnelOpen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    job_id: Annotated[bytes, Meta(min_length=16, max_length=16)]
    port: Annotated[int, Meta(ge=1, le=65535)]


class TunnelReply(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    code: Literal["ok", "refused", "unreachable"] = "ok"
    error: Annotated[str, Meta(max_length=256)] = ""


async def send_frame(stream: ByteStream, header: TunnelOpen | TunnelReply) -> None:
    data = msgspec.msgpack.encode(header)
    await stream.send_all(struct.pack(">I", len(data)) + data)


async def receive_frame(
    stream: ByteStream, kind: type[T], buffer: bytearray, *, timeout_s: float
) -> T:
    with trio.move_on_after(timeout_s):
        (length,) = struct.unpack(">I", await receive_exactly(stream, 4, buffer))
        if length > MAX_HEADER_BYTES:
            raise FrameTooLarge(length, MAX_HEADER_BYTES)
        data = await receive_exactly(stream, length, buffer)
        try:
            return msgspec.msgpack.decode(data, type=kind)
        except msgspec.DecodeError as exc:
            raise BulkError(f"bad tunnel header: {exc}") from exc
    raise NetTimeout("tunnel header", timeout_s)


class HalfClosable(Protocol):
    async def send_all(self, data: bytes) -> None: ...

    async def receive_some(self, max_bytes: int) -> bytes: ...

    async def send_eof(self) -> None: ...


class ByteStreamEnd:
    """A :class:`ByteStream` as one end of :func:`splice`; its ``aclose`` half-closes
    (a libp2p/Yamux close sends FIN: the other side may still write)."""

    def __init__(self, stream: ByteStream, buffer: bytes = b"") -> None:
        self._stream = stream
        self._buffer = buffer

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def receive_some(self, max_bytes: int) -> bytes:
        if self._buffer:
            data, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_eof(self) -> None:
        await self._stream.aclose()


_BROKEN = (NetError, OSError, trio.BrokenResourceError, trio.ClosedResourceError)


async def splice(a: HalfClosable, b: HalfClosable, *, name: str) -> int:
    """Copy bytes both ways until both directions ended; an end of stream one way is passed
    on as a half-close. Returns the bytes moved. A broken direction ends both."""
    moved = 0

    async def pump(src: HalfClosable, dst: HalfClosable, scope: trio.CancelScope) -> None:
        nonlocal moved
        try:
            while data := await src.receive_some(CHUNK):
                await dst.send_all(data)
                moved += len(data)
            await dst.send_eof()
        except _BROKEN as exc:
            log.debug("tunnel %s: a direction broke: %r", name, exc)
            scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, a, b, nursery.cancel_scope)
        nursery.start_soon(pump, b, a, nursery.cancel_scope)
    return moved
