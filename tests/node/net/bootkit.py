"""``dgpu bootstrap serve --json`` as a child process, for tests of real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio


@dataclass
class BootstrapProcess:
    info: dict[str, str]
    """The JSON line it printed when ready (``peer_id``, ``multiaddr``, ...)."""
    process: trio.Process

    @property
    def peer_id(self) -> str:
        return self.info["peer_id"]

    @property
    def multiaddr(self) -> str:
        return self.info["multiaddr"]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@asynccontextmanager
async def bootstrap_process(*extra: str) -> AsyncIterator[BootstrapProcess]:
    argv = [
        sys.executable,
        "-m",
        "dgpu.cli.main",
        "bootstrap",
        "serve",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--json",
        *extra,
    ]
    process = await trio.lowlevel.open_process(
        argv, stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        assert process.stdout is not None
        buffer = b""
        with trio.fail_after(60):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some(4096)
                assert chunk, f"bootstrap exited with {process.poll()}"
                buffer += chunk
        info: dict[str, str] = json.loads(buffer.split(b"\n")[0])
        yield BootstrapProcess(info, process)
    finally:
        with trio.CancelScope(shield=True):
            process.terminate()
            with trio.move_on_after(10):
                await process.wait()
            if process.poll() is None:
                process.kill()
                await process.wait()
