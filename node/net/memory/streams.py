"""In-memory byte streams: two pipes per connection, latency paid by the sender.

No task per stream: a writer sleeps the link delay and appends to the reader's buffer,
readers park until bytes arrive. A reset (by either end, a crash or a partition) wakes
both ends with :class:`~dgpu.node.net.errors.StreamReset`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio
from dgpu.node.net.errors import StreamClosed, StreamReset

PIPE_CAPACITY: Final = 1024 * 1024


class _Pipe:
    """One direction: a bounded byte buffer with an end-of-stream mark."""

    __slots__ = ("data", "eof", "readable", "writable")

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.readable = trio.lowlevel.ParkingLot()
        self.writable = trio.lowlevel.ParkingLot()


class MemoryConnection:
    """One stream between two peers; ``ends`` are the dialer's and the listener's."""

    __slots__ = ("broken", "dialer", "ends", "listener", "on_done")

    def __init__(
        self,
        dialer: str,
        listener: str,
        delay: Callable[[str, str], float],
        on_done: Callable[[MemoryConnection], None],
    ) -> None:
        self.dialer = dialer
        self.listener = listener
        self.broken = False
        self.on_done = on_done
        forward, backward = _Pipe(), _Pipe()
        self.ends = (
            MemoryByteStream(self, dialer, listener, backward, forward, delay),
            MemoryByteStream(self, listener, dialer, forward, backward, delay),
        )

    def break_(self) -> None:
        """Abort both directions (reset, crash, partition); idempotent."""
        if self.broken:
            return
        self.broken = True
        for end in self.ends:
            for pipe in (end.inbound, end.outbound):
                pipe.readable.unpark_all()
                pipe.writable.unpark_all()
        self.on_done(self)

    def maybe_done(self) -> None:
        if all(end.outbound.eof for end in self.ends):
            self.on_done(self)


class MemoryByteStream:
    """A :class:`~dgpu.node.net.framing.ByteStream` end of a :class:`MemoryConnection`."""

    def __init__(
        self,
        conn: MemoryConnection,
        local: str,
        remote: str,
        inbound: _Pipe,
        outbound: _Pipe,
        delay: Callable[[str, str], float],
    ) -> None:
        self.conn = conn
        self.local = local
        self.remote = remote
        self.inbound = inbound
        self.outbound = outbound
        self._delay = delay

    def _check_open(self) -> None:
        if self.conn.broken:
            raise StreamReset(f"stream between {self.local} and {self.remote} was reset")

    async def send_all(self, data: bytes) -> None:
        self._check_open()
        if self.outbound.eof:
            raise StreamClosed("stream closed for writing")
        delay = self._delay(self.local, self.remote)
        if delay > 0:
            await trio.sleep(delay)
        else:
            await trio.lowlevel.checkpoint()
        view = memoryview(data)
        while view:
            self._check_open()
            room = PIPE_CAPACITY - len(self.outbound.data)
            if room <= 0:
                await self.outbound.writable.park()
                continue
            self.outbound.data += view[:room]
            view = view[room:]
            self.outbound.readable.unpark_all()

    async def receive_some(self, max_bytes: int) -> bytes:
        await trio.lowlevel.checkpoint()
        while not self.inbound.data:
            self._check_open()
            if self.inbound.eof:
                return b""
            await self.inbound.readable.park()
        self._check_open()
        chunk = bytes(self.inbound.data[:max_bytes])
        del self.inbound.data[:max_bytes]
        self.inbound.writable.unpark_all()
        return chunk

    async def aclose(self) -> None:
        if not self.outbound.eof:
            self.outbound.eof = True
            self.outbound.readable.unpark_all()
            self.conn.maybe_done()
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        self.conn.break_()
        await trio.lowlevel.checkpoint()
