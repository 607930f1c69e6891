"""Length-prefixed frames of canonical messages over any byte stream.

A frame is ``uvarint(len(payload)) || payload`` where the payload is one message in the
canonical MessagePack of :mod:`dgpu.protocol.codec`. The length is checked against the cap
as soon as its prefix is read, so a huge announced length costs the reader nothing; the
whole frame (prefix and body) is read under one deadline, so a peer sending half a frame
and stalling is cut off at the timeout. The same code frames libp2p streams and in-memory
streams: transports only supply a :class:`ByteStream`.
"""

# The interface takes explicit per-call timeouts (every read has a deadline by design).
# ruff: noqa: ASYNC109

from __future__ import annotations

import math
from typing import Final, Protocol, TypeVar

import trio
from dgpu.node.net.errors import FrameError, FrameTooLarge, NetTimeout, StreamClosed
from dgpu.protocol.codec import decode, decode_as, encode
from dgpu.protocol.messages import MAX_MESSAGE_BYTES, AnyMessage, Message

M = TypeVar("M", bound=Message)

DEFAULT_READ_TIMEOUT_S: Final = 30.0
DEFAULT_WRITE_TIMEOUT_S: Final = 30.0
_READ_CHUNK: Final = 64 * 1024


class ByteStream(Protocol):
    """What a transport supplies: an ordered, reliable byte stream that can be aborted."""

    async def send_all(self, data: bytes) -> None:
        """Write every byte; raise ``StreamReset``/``StreamClosed`` when that is impossible."""
        ...

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes; ``b""`` at a clean end of stream."""
        ...

    async def aclose(self) -> None:
        """Close gracefully (the remote reads end of stream after the buffered bytes)."""
        ...

    async def reset(self) -> None:
        """Abort both directions at once; never raises."""
        ...


def encode_uvarint(value: int) -> bytes:
    if value < 0:
        raise ValueError("uvarint of a negative number")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    return encode_uvarint(len(payload)) + payload


def prefix_limit(max_frame: int) -> int:
    """Bytes of uvarint needed for ``max_frame``: a longer prefix is refused unread."""
    return max(1, math.ceil(max_frame.bit_length() / 7))


class FrameReader:
    """Incremental frame parser: feed bytes, take complete payloads (sans-IO)."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._max_prefix = prefix_limit(max_frame)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """One complete payload, or ``None`` when more bytes are needed."""
        length = 0
        for index, byte in enumerate(self._buffer):
            length |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                header = index + 1
                break
            if index + 1 >= self._max_prefix:  # more prefix bytes: at least 2**(7*(index+1))
                raise FrameTooLarge(1 << (7 * (index + 1)), self.max_frame)
        else:
            return None
        if length > self.max_frame:
            raise FrameTooLarge(length, self.max_frame)
        if length == 0:
            raise FrameError("empty frame")
        if len(self._buffer) < header + length:
            return None
        payload = bytes(self._buffer[header : header + length])
        del self._buffer[: header + length]
        return payload


class FramedStream:
    """A :class:`~dgpu.node.net.interface.MessageStream` over a :class:`ByteStream`."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        remote_peer: str,
        protocol: str,
        remote_ip: str = "",
        max_frame: int = MAX_MESSAGE_BYTES,
        read_timeout: float = DEFAULT_READ_TIMEOUT_S,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT_S,
    ) -> None:
        self._stream = stream
        self._reader = FrameReader(max_frame)
        self._send_lock = trio.Lock()
        self._receive_lock = trio.Lock()
        self.remote_peer = remote_peer
        self.protocol = protocol
        self.remote_ip = remote_ip
        self.max_frame = max_frame
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout

    async def send(self, message: Message, *, timeout: float | None = None) -> None:
        payload = encode(message)
        if len(payload) > self.max_frame:
            raise FrameTooLarge(len(payload), self.max_frame)
        await self.send_frame(payload, timeout=timeout)

    async def send_frame(self, payload: bytes, *, timeout: float | None = None) -> None:
        """Send one already-encoded payload (it is not checked to be a message)."""
        seconds = self.write_timeout if timeout is None else timeout
        async with self._send_lock:
            with trio.move_on_after(seconds) as scope:
                await self._stream.send_all(encode_frame(payload))
            if scope.cancelled_caught:
                raise NetTimeout(f"send to {self.remote_peer}", seconds)

    async def receive_frame(self, *, timeout: float | None = None) -> bytes:
        """The payload of the next frame, read under one deadline."""
        seconds = self.read_timeout if timeout is None else timeout
        async with self._receive_lock:
            with trio.move_on_after(seconds):
                return await self._read_frame()
            raise NetTimeout(f"receive from {self.remote_peer}", seconds)

    async def _read_frame(self) -> bytes:
        while True:
            payload = self._reader.next_frame()
            if payload is not None:
                return payload
            data = await self._stream.receive_some(_READ_CHUNK)
            if not data:
                if self._reader.buffered:
                    raise FrameError(f"stream ended inside a frame ({self._reader.buffered} bytes)")
                raise StreamClosed(f"{self.remote_peer} closed the stream")
            self._reader.feed(data)

    async def receive(self, *, timeout: float | None = None) -> AnyMessage:
        return decode(await self.receive_frame(timeout=timeout), limit=self.max_frame)

    async def receive_as(self, kind: type[M], *, timeout: float | None = None) -> M:
        return decode_as(kind, await self.receive_frame(timeout=timeout), limit=self.max_frame)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def reset(self) -> None:
        await self._stream.reset()

    async def __aenter__(self) -> FramedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            await self.aclose()
        else:
            await self.reset()
