"""Output files over the node's own network, on ``/dgpu/outputs/1.0.0``.

Used until (and wherever) the dedicated bulk channel is not available: it runs over any
:class:`~dgpu.node.net.interface.Network` whose streams are length-prefixed frames (both
implementations), so simulations and tests move outputs too. One stream per file::

    renter   → OutputManifest(job_id, files=[the file wanted])   (unsigned: the stream's
                                                                   peer is authenticated)
    provider → OutputManifest(job_id, files=[that file]) signed  | ErrorMessage
    provider → raw frames of the file's bytes, exactly ``size`` of them in total

The provider serves a file only to the renter of the job, only while it is published,
and only if path, sha256 and size all match what it published. The renter writes to a
temporary file, checks size and sha256, and only then moves it into place.

Both sides touch the disk inline, one block of at most ``CHUNK_BYTES`` at a time, never
through worker threads (``trio.open_file``, ``trio.Path``): a block of a local file costs
microseconds, while a task waiting on a worker thread counts as blocked for trio's
``MockClock(autojump_threshold=0)`` (trio issue #456), so under the virtual clocks of the
tests and simulations every thread hop let time leap to the next deadline — past the
renter's read timeout or the provider's output retention, and a finished job's outputs
were "not there" for its own renter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from dgpu.node.net.framing import FramedStream
from dgpu.node.net.interface import MessageStream, Network
from dgpu.node.provider.ports import HostedFile
from dgpu.protocol.errors import DecodeError, DgpuError
from dgpu.protocol.identity import Identity, public_key_of_peer_id
from dgpu.protocol.messages import ErrorMessage, OutputManifest
from dgpu.protocol.signing import sign

log = logging.getLogger(__name__)

OUTPUTS_PROTOCOL: Final = "/dgpu/outputs/1.0.0"
CHUNK_BYTES: Final = 48 * 1024
READ_TIMEOUT_S: Final = 30.0


def framed(stream: MessageStream) -> FramedStream:
    """The frame layer under a message stream (both network implementations use one)."""
    if not isinstance(stream, FramedStream):
        raise DgpuError("this network's streams cannot carry raw output bytes")
    return stream


class StreamOutputHost:
    """An :class:`~dgpu.node.provider.ports.OutputHost` serving on ``/dgpu/outputs/1.0.0``.

    Call :meth:`serve` once the network runs; :meth:`withdraw` (or the retention timer the
    provider runs) forgets a job's files (the files themselves stay on disk for the
    provider to delete)."""

    def __init__(self, network: Network, identity: Identity) -> None:
        self.network = network
        self.identity = identity
        self._jobs: dict[bytes, tuple[bytes, dict[str, HostedFile]]] = {}
        self._limits: dict[bytes, int] = {}

    @property
    def address(self) -> str:
        return ""  # fetched from the provider's own peer, over the network

    def serve(self) -> None:
        self.network.serve(OUTPUTS_PROTOCOL, self._handle)

    def publish(
        self, job_id: bytes, renter: bytes, files: Sequence[HostedFile], *, max_bytes: int
    ) -> None:
        self._jobs[job_id] = (renter, {f.path: f for f in files})
        self._limits[job_id] = max_bytes

    def withdraw(self, job_id: bytes) -> None:
        self._jobs.pop(job_id, None)
        self._limits.pop(job_id, None)

    def published(self, job_id: bytes) -> list[HostedFile]:
        entry = self._jobs.get(job_id)
        return list(entry[1].values()) if entry else []

    async def _handle(self, stream: MessageStream, peer: str) -> None:
        frames = framed(stream)
        try:
            request = await stream.receive_as(OutputManifest, timeout=READ_TIMEOUT_S)
        except DecodeError as exc:
            await stream.send(ErrorMessage(code="bad_request", message=str(exc)[:256]))
            return
        hosted = self._authorised(request, peer)
        if isinstance(hosted, ErrorMessage):
            await stream.send(hosted)
            return
        wanted = request.files[0]
        await stream.send(
            sign(OutputManifest(job_id=request.job_id, files=[wanted]), self.identity)
        )
        sent = 0
        with hosted.local.open("rb") as source:  # inline, see the module docstring
            while sent < hosted.size:
                block = source.read(min(CHUNK_BYTES, hosted.size - sent))
                if not block:
                    raise DgpuError(f"output {hosted.path} shrank on disk")
                await frames.send_frame(block)
                sent += len(block)
        log.info("sent output %s of job %s (%d bytes)", hosted.path, request.job_id.hex(), sent)

    def _authorised(self, request: OutputManifest, peer: str) -> HostedFile | ErrorMessage:
        entry = self._jobs.get(request.job_id)
        try:
            asker = public_key_of_peer_id(peer)
        except DgpuError:
            asker = b""
        if entry is None or entry[0] != asker:
            return ErrorMessage(
                code="unknown_job",
                message="no outputs of that job for you",
                job_id=request.job_id,
            )
        if len(request.files) != 1:
            return ErrorMessage(code="bad_request", message="ask for one file per stream")
        wanted = request.files[0]
        hosted = entry[1].get(wanted.path)
        if hosted is None or hosted.sha256 != wanted.sha256 or hosted.size != wanted.size:
            return ErrorMessage(
                code="bad_request", message=f"no output {wanted.path!r} with that content"
            )
        if hosted.size > self._limits.get(request.job_id, 0):
            return ErrorMessage(code="bad_request", message="output over the agreed limit")
        return hosted
