"""The log stream of a job: producers (one per output stream) and one consumer.

Producers never block: a job must not stall because nobody reads its logs. What the
consumer has not taken yet is held up to a byte budget; beyond it new chunks are dropped
and counted, and the consumer is told how much was lost (on ``stderr``, marked
``[dgpu]``) before the next chunk it gets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Final

import trio
from dgpu.node.executors.errors import JobStateError
from dgpu.node.executors.spec import MAX_LOG_CHUNK, LogChunk, Stream

DEFAULT_LOG_BUFFER_BYTES: Final = 4 * 1024 * 1024


class LogBuffer:
    """Chunks written by ``writers`` producers, read once by one consumer."""

    def __init__(self, writers: int, max_buffered: int = DEFAULT_LOG_BUFFER_BYTES) -> None:
        self._chunks: deque[LogChunk] = deque()
        self._buffered = 0
        self._max_buffered = max_buffered
        self._dropped = 0
        self._writers = writers
        self._wakeup = trio.Event()
        self._taken = False
        self.total_bytes = 0

    def put(self, stream: Stream, data: bytes) -> None:
        """Add bytes (split into chunks of at most :data:`MAX_LOG_CHUNK`); never blocks."""
        self.total_bytes += len(data)
        for start in range(0, len(data), MAX_LOG_CHUNK):
            piece = data[start : start + MAX_LOG_CHUNK]
            if self._buffered + len(piece) > self._max_buffered:
                self._dropped += len(piece)
                continue
            self._chunks.append(LogChunk(stream, piece))
            self._buffered += len(piece)
        self._wakeup.set()

    def close_writer(self) -> None:
        """One producer is done; the stream ends when all are and the buffer is empty."""
        self._writers -= 1
        self._wakeup.set()

    def stream(self) -> AsyncIterator[LogChunk]:
        """The chunks in arrival order; may be taken only once."""
        if self._taken:
            raise JobStateError("the logs of a job can be read only once")
        self._taken = True
        return _LogIterator(self)

    async def _next(self) -> LogChunk:
        while True:
            if self._dropped:
                note = f"[dgpu] {self._dropped} bytes of log dropped (reader too slow)\n"
                self._dropped = 0
                return LogChunk("stderr", note.encode())
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk.data)
                return chunk
            if self._writers <= 0:
                raise StopAsyncIteration
            self._wakeup = trio.Event()
            await self._wakeup.wait()


class _LogIterator:
    def __init__(self, buffer: LogBuffer) -> None:
        self._buffer = buffer

    def __aiter__(self) -> _LogIterator:
        return self

    async def __anext__(self) -> LogChunk:
        return await self._buffer._next()
