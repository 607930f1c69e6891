"""Fetching a finished job's output files, verified against the signed manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from dgpu.protocol.messages import OutputFile, Quote


class OutputFetcher(Protocol):
    """Downloads one output file of a job from its provider to ``dest``; raises
    :class:`~dgpu.node.renter.errors.OutputMismatch` unless the bytes written have the
    manifest's size and sha256 (a partial file is removed)."""

    async def fetch(self, *, quote: Quote, file: OutputFile, dest: Path) -> None: ...
