"""The renter's inputs: listed in the JobRequest, pushed over the bulk channel before funding.

``dgpu run --input PATH`` (repeatable): a file becomes ``/in/NAME``, a folder ``/in/NAME/…``
(its symlinks are kept when they stay inside it; one that leaves it is refused here, as the
provider would). :func:`scan_inputs` hashes every file and returns the tree for
:class:`~dgpu.protocol.negotiation.JobSpec.inputs` and where each content lives;
:class:`InputUploader` pushes each content the Quote agreed to the provider's bulk channel
(the same Noise-encrypted libp2p connection the outputs come back on) with a ticket the
renter signs; a push cut part way resumes from the bytes the provider kept.

Inputs move after the Agreement and before the channel is funded: the transfer is not
billed (see :mod:`dgpu.protocol.inputs`), and a refused upload costs the renter nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio
from dgpu.node.net.bulk import BULK_PROTOCOL, make_ticket, push, sha256_file
from dgpu.node.net.errors import BulkError, NetError, NetTimeout, StreamClosed, StreamReset
from dgpu.node.net.framing import ByteStream
from dgpu.node.renter.errors import InputError
from dgpu.protocol.identity import Identity, peer_id_of
from dgpu.protocol.inputs import InputRefused, check_inputs
from dgpu.protocol.messages import InputFile, Quote

log = logging.getLogger(__name__)
TICKET_TTL_S: Final = 3600
ATTEMPTS: Final = 3
_DROPPED = (StreamClosed, StreamReset, NetTimeout, trio.BrokenResourceError)


@dataclass(frozen=True)
class InputTree:
    """What ``--input`` named: the entries to list and where each content is on disk."""

    files: tuple[InputFile, ...]
    sources: dict[bytes, Path] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _scan(paths: Sequence[Path]) -> InputTree:
    files: list[InputFile] = []
    sources: dict[bytes, Path] = {}

    def add_file(path: Path, name: str) -> None:
        try:
            sha, size = sha256_file(path)
        except OSError as exc:
            raise InputError(f"cannot read input {path}: {exc.strerror}") from exc
        files.append(InputFile(path=name, sha256=sha, size=size))
        sources.setdefault(sha, path)

    for given in paths:
        if not given.exists() and not given.is_symlink():
            raise InputError(f"input {given} does not exist")
        name = given.resolve().name if given.name in ("", ".", "..") else given.name
        if given.is_symlink() and not given.is_dir():
            given = given.resolve()  # a file named directly: send what it points to
        if given.is_file():
            add_file(given, name)
            continue
        for folder, dirs, names in os.walk(given):
            here = Path(folder)
            relative = here.relative_to(given).as_posix()
            prefix = name if relative == "." else f"{name}/{relative}"
            for entry in sorted(dirs) + sorted(names):
                path = here / entry
                if path.is_symlink():
                    files.append(
                        InputFile(
                            path=f"{prefix}/{entry}", sha256=b"", size=0, link=os.readlink(path)
                        )
                    )
                elif path.is_file():
                    add_file(path, f"{prefix}/{entry}")
                elif not path.is_dir():
                    raise InputError(f"input {path} is neither a file, a folder nor a symlink")
            dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
    return InputTree(tuple(files), sources)


async def scan_inputs(paths: Sequence[Path], *, limit: int | None = None) -> InputTree:
    """Hash the inputs (in a worker thread) and check the tree as a provider will:
    :class:`InputError` names the first problem (a symlink out of its folder, two inputs
    of one name, more than ``limit`` bytes)."""
    tree = await trio.to_thread.run_sync(_scan, list(paths))
    try:
        check_inputs(tree.files, limit if limit is not None else tree.size)
    except InputRefused as exc:
        raise InputError(str(exc)) from exc
    return tree


@dataclass
class UploadStats:
    files: int = 0
    bytes: int = 0
    resumed: int = 0
    seconds: float = 0.0


OpenStream = Callable[[str, str], Awaitable[ByteStream]]


class InputUploader:
    """Pushes an agreed job's inputs to the provider's bulk channel."""

    def __init__(
        self,
        identity: Identity,
        *,
        open_stream: OpenStream | None = None,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 30.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.identity = identity
        self.open_stream = open_stream
        self.clock = clock
        self.timeout_s = timeout_s
        self.progress = progress
        self.stats = UploadStats()

    async def upload(self, quote: Quote, tree: InputTree) -> None:
        """Push every content of ``tree`` (once each); raise :class:`InputError`."""
        if not tree.files:
            return
        if not quote.bulk_addr:
            raise InputError("the provider named no bulk address to send inputs to")
        if quote.max_input_bytes != tree.size:
            raise InputError(
                f"the quote agreed {quote.max_input_bytes} input bytes, we have {tree.size}"
            )
        opener = None
        if self.open_stream is not None:
            open_stream, peer = self.open_stream, peer_id_of(quote.provider)

            async def opener() -> ByteStream:
                return await open_stream(peer, BULK_PROTOCOL)

        started = trio.current_time()
        sizes = {f.sha256: f.size for f in tree.files if not f.link}
        done = 0
        total = sum(sizes.values())
        for sha, size in sizes.items():
            ticket = make_ticket(
                self.identity,
                job_id=quote.job_id,
                server=quote.provider,
                op="put",
                sha256=sha,
                size=size,
                expires_at=int(self.clock()) + TICKET_TTL_S,
            )
            source = tree.sources[sha]
            for attempt in range(ATTEMPTS):
                try:
                    await push(
                        quote.bulk_addr,
                        ticket,
                        source,
                        timeout_s=self.timeout_s,
                        open_stream=opener,
                    )
                    break
                except _DROPPED as exc:
                    if attempt == ATTEMPTS - 1:
                        raise InputError(f"sending {source} failed: {exc}") from exc
                    log.info("upload of %s dropped (%s); resuming", source, exc)
                    self.stats.resumed += 1
                except (BulkError, NetError) as exc:
                    raise InputError(f"sending {source}: {exc}") from exc
            done += size
            self.stats.files += 1
            self.stats.bytes += size
            if self.progress is not None:
                self.progress(done, total)
        self.stats.seconds += trio.current_time() - started
