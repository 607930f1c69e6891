"""The renter's end of the port tunnels: ``dgpu run --port LOCAL:REMOTE``.

:func:`open_port_forwards` listens on ``127.0.0.1:LOCAL`` (loopback only: the port is the
renter's, not its LAN's) for each forward while the job runs, and carries each accepted
TCP connection over one :data:`~dgpu.node.net.tunnel.TUNNEL_PROTOCOL` stream to the
provider, which connects it to the container's port REMOTE. Connections are refused by the
provider unless they come from this renter, for a port of the Quote, while the job runs.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Final

import trio
from dgpu.node.executors.base import open_task_nursery
from dgpu.node.net.errors import NetError
from dgpu.node.net.framing import ByteStream
from dgpu.node.net.tunnel import (
    TUNNEL_PROTOCOL,
    ByteStreamEnd,
    TunnelOpen,
    TunnelReply,
    receive_frame,
    send_frame,
    splice,
)
from dgpu.node.renter.errors import TunnelError

log = logging.getLogger(__name__)
OPEN_TIMEOUT_S: Final = 30.0
OpenStream = Callable[[str, str], Awaitable[ByteStream]]


@dataclass(frozen=True)
class Forward:
    local: int
    remote: int

    @classmethod
    def parse(cls, text: str) -> Forward:
        """``8888`` or ``LOCAL:REMOTE`` (ports 1-65535; LOCAL 0 picks a free port)."""
        local, _, remote = text.partition(":")
        try:
            pair = (int(local), int(remote or local))
        except ValueError:
            raise TunnelError(f"--port {text!r}: expected PORT or LOCAL:REMOTE") from None
        if not (0 <= pair[0] <= 65535 and 1 <= pair[1] <= 65535):
            raise TunnelError(f"--port {text!r}: ports are 1-65535")
        return cls(*pair)


class _Client:
    """A local TCP connection as one end of :func:`splice`."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def receive_some(self, max_bytes: int) -> bytes:
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_eof(self) -> None:
        await self._stream.send_eof()


async def _carry(
    open_stream: OpenStream, peer: str, job_id: bytes, remote: int, client: trio.SocketStream
) -> None:
    """One local connection through one tunnel stream; nothing escapes (a connection
    boundary)."""
    try:
        with trio.fail_after(OPEN_TIMEOUT_S):
            stream = await open_stream(peer, TUNNEL_PROTOCOL)
            await send_frame(stream, TunnelOpen(job_id=job_id, port=remote))
            buffer = bytearray()
            reply = await receive_frame(stream, TunnelReply, buffer, timeout_s=OPEN_TIMEOUT_S)
        if reply.code != "ok":
            log.warning("the provider refused a tunnel to port %d: %s", remote, reply.error)
            await stream.reset()
            return
        try:
            await splice(_Client(client), ByteStreamEnd(stream, bytes(buffer)), name=str(remote))
        finally:
            with trio.move_on_after(2) as scope:
                scope.shield = True
                try:
                    await stream.aclose()
                except NetError:
                    log.debug("closing a tunnel stream failed", exc_info=True)
    except (NetError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
        log.warning("tunnel to port %d failed: %s", remote, exc)
    except Exception:  # connection boundary: one bad connection must not end the job
        log.exception("tunnel to port %d failed", remote)
    finally:
        await trio.aclose_forcefully(client)


@asynccontextmanager
async def open_port_forwards(
    forwards: Sequence[Forward], *, open_stream: OpenStream, peer: str, job_id: bytes
) -> AsyncIterator[list[int]]:
    """Listen for each forward (yields the local ports, useful with LOCAL 0) until the
    block exits; raise :class:`TunnelError` when a local port is taken."""
    listeners: list[trio.SocketListener] = []
    try:
        for forward in forwards:
            try:
                listeners += await trio.open_tcp_listeners(forward.local, host="127.0.0.1")
            except OSError as exc:
                why = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise TunnelError(f"cannot listen on 127.0.0.1:{forward.local}: {why}") from exc
        ports = [listener.socket.getsockname()[1] for listener in listeners]
        # the body's own exception comes out unwrapped (the serving tasks never raise)
        async with open_task_nursery() as nursery:
            for listener, forward in zip(listeners, forwards, strict=True):
                handler = partial(_carry, open_stream, peer, job_id, forward.remote)
                nursery.start_soon(partial(trio.serve_listeners, handler, [listener]))
            for forward, port in zip(forwards, ports, strict=True):
                log.info("forwarding 127.0.0.1:%d to the job's port %d", port, forward.remote)
            yield ports
            nursery.cancel_scope.cancel()
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
