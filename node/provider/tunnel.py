"""The provider's end of the port tunnels (:mod:`dgpu.node.net.tunnel`).

Served only by providers that opted in (``--allow-ports``; their offers say ``ports``).
A tunnel stream is accepted only when its authenticated remote peer is the renter of a
job running now and the port was agreed in that job's Quote; the bytes then go to the
port through the executor (:meth:`~dgpu.node.executors.DockerJob.open_port`: a relay
inside the container, which keeps no network of its own). Tunnels end with the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

import trio
from dgpu.node.executors import PortStream
from dgpu.node.executors.errors import ExecutorError
from dgpu.node.net.bulk import RawServing
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
from dgpu.node.provider.session import ProviderSession
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import public_key_of_peer_id

log = logging.getLogger(__name__)
HEADER_TIMEOUT_S: Final = 10.0


@runtime_checkable
class HasPorts(Protocol):
    async def open_port(self, port: int) -> PortStream: ...


class TunnelRefused(DgpuError):
    pass


def _check(session: ProviderSession | None, peer: str, port: int) -> HasPorts:
    try:
        sender = public_key_of_peer_id(peer)
    except DgpuError:
        sender = b""
    if session is None or session.request.renter != sender:
        raise TunnelRefused("no running job of yours has that id")
    if port not in session.quote.ports:
        raise TunnelRefused(f"port {port} was not agreed for this job")
    job = session.running_job
    if job is None:
        raise TunnelRefused("the job is not running")
    if not isinstance(job, HasPorts):
        raise TunnelRefused("this provider's executor opens no ports")
    return job


def serve_tunnels(network: RawServing, find: Callable[[bytes], ProviderSession | None]) -> None:
    """Serve :data:`TUNNEL_PROTOCOL` on ``network``; ``find`` names the running session of
    a job id (None when there is none)."""

    async def handle(stream: ByteStream, peer: str) -> None:
        buffer = bytearray()
        try:
            opened = await receive_frame(stream, TunnelOpen, buffer, timeout_s=HEADER_TIMEOUT_S)
            session = find(opened.job_id)
            job = _check(session, peer, opened.port)
            assert session is not None
            try:
                target = await job.open_port(opened.port)
            except ExecutorError as exc:
                await send_frame(stream, TunnelReply(code="unreachable", error=str(exc)[:256]))
                return
            try:
                await send_frame(stream, TunnelReply())
                log.info("job %s: tunnel to port %d opened", opened.job_id.hex(), opened.port)
                async with trio.open_nursery() as nursery:

                    async def end_with_job() -> None:
                        await session.finished.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(end_with_job)
                    moved = await splice(
                        ByteStreamEnd(stream, bytes(buffer)),
                        target,
                        name=f"{opened.job_id.hex()}:{opened.port}",
                    )
                    nursery.cancel_scope.cancel()
                log.info(
                    "job %s: tunnel to port %d closed (%d bytes)",
                    opened.job_id.hex(),
                    opened.port,
                    moved,
                )
            finally:
                await target.aclose()
        except TunnelRefused as exc:
            log.info("tunnel from %s refused: %s", peer, exc)
            await send_frame(stream, TunnelReply(code="refused", error=str(exc)[:256]))
        finally:
            with trio.move_on_after(2) as scope:
                scope.shield = True
                try:
                    await stream.aclose()
                except NetError:
                    log.debug("closing a tunnel stream failed", exc_info=True)

    network.serve_raw(TUNNEL_PROTOCOL, handle)
