"""Fetching a finished job's output files, verified against the signed manifest.

:class:`OutputFetcher` is the interface; :class:`StreamOutputFetcher` fetches over the
node's network on ``/dgpu/outputs/1.0.0`` (see :mod:`dgpu.node.provider.outputs`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from dgpu.node.net.interface import Network, PeerRef
from dgpu.node.provider.outputs import OUTPUTS_PROTOCOL, READ_TIMEOUT_S, framed
from dgpu.node.renter.errors import OutputMismatch
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.identity import peer_id_of
from dgpu.protocol.messages import ErrorMessage, OutputFile, OutputManifest, Quote
from dgpu.protocol.signing import verify


class OutputFetcher(Protocol):
    """Downloads one output file of a job from its provider to ``dest``; raises
    :class:`~dgpu.node.renter.errors.OutputMismatch` unless the bytes written have the
    manifest's size and sha256 (a partial file is removed)."""

    async def fetch(self, *, quote: Quote, file: OutputFile, dest: Path) -> None: ...


class StreamOutputFetcher:
    """:class:`OutputFetcher` over the node's network (one stream per file)."""

    def __init__(self, network: Network) -> None:
        self.network = network

    async def fetch(self, *, quote: Quote, file: OutputFile, dest: Path) -> None:
        if quote.max_output_bytes and file.size > quote.max_output_bytes:
            raise OutputMismatch(file.path, f"{file.size} bytes exceed the agreed limit")
        peer = PeerRef(peer_id_of(quote.provider))
        # Disk work inline, one block at a time (see dgpu.node.provider.outputs).
        partial = dest.with_name(dest.name + ".part")
        partial.parent.mkdir(parents=True, exist_ok=True)
        async with self.network.open_stream(peer, OUTPUTS_PROTOCOL) as stream:
            await stream.send(OutputManifest(job_id=quote.job_id, files=[file]))
            reply = await stream.receive(timeout=READ_TIMEOUT_S)
            if isinstance(reply, ErrorMessage):
                raise OutputMismatch(file.path, f"the provider refused ({reply.message})")
            if not isinstance(reply, OutputManifest) or reply.files != [file]:
                raise OutputMismatch(file.path, "the provider answered something else")
            try:
                verify(reply, quote.provider)
            except SignatureError as exc:
                raise OutputMismatch(file.path, str(exc)) from exc
            frames = framed(stream)
            digest = hashlib.sha256()
            received = 0
            try:
                with partial.open("wb") as out:
                    while received < file.size:
                        block = await frames.receive_frame(timeout=READ_TIMEOUT_S)
                        received += len(block)
                        if received > file.size:
                            raise OutputMismatch(file.path, "more bytes than announced")
                        digest.update(block)
                        out.write(block)
                if digest.digest() != file.sha256:
                    raise OutputMismatch(file.path, "sha256 does not match the manifest")
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(dest)
