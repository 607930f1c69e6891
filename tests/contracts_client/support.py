"""Shared pieces of the chain tests: running one scenario against every Chain and loop,
and starting ``dgpu chain serve`` as a child process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from dgpu.contracts_client.chain import Chain, LiteSVMChain, RpcChain
from solders.keypair import Keypair
from solders.pubkey import Pubkey

Scenario = Callable[[Chain], Awaitable[None]]

# (implementation, event loop) pairs every interface scenario runs under
COMBOS = [
    ("litesvm", "trio"),
    ("litesvm", "asyncio"),
    ("rpc", "trio"),
    ("rpc", "asyncio"),
]
COMBO_IDS = [f"{impl}-{loop}" for impl, loop in COMBOS]
START_TIMEOUT = 60.0
SOL = 10**9


@dataclass(frozen=True)
class Node:
    """A running ``dgpu chain serve`` child."""

    url: str
    mint: Pubkey
    mint_authority_keyfile: Path
    program_id: Pubkey | None
    state_dir: Path
    process: subprocess.Popen[str]


def run_scenario(impl: str, loop: str, scenario: Scenario, node: Node | None) -> None:
    """Run ``scenario`` on a fresh chain of kind ``impl`` under the ``loop`` event loop."""

    async def main() -> None:
        chain: Chain
        if impl == "litesvm":
            chain = LiteSVMChain()
        else:
            assert node is not None
            chain = RpcChain(node.url, confirm_timeout=30.0, poll_interval=0.05)
        try:
            await scenario(chain)
        finally:
            await chain.aclose()

    anyio.run(main, backend=loop)


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("dgpu chain serve did not report ready")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"dgpu chain serve exited: {err}")
            return line


@contextmanager
def serve_node(state_dir: Path, *extra: str) -> Iterator[Node]:
    """Start ``dgpu chain serve --port 0 --json`` and stop it (SIGTERM) afterwards."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dgpu.cli.main",
            "chain",
            "serve",
            "--port",
            "0",
            "--json",
            "--state-dir",
            str(state_dir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        info = json.loads(_read_line(proc, START_TIMEOUT))
        program = info["program_id"]
        yield Node(
            url=info["rpc_url"],
            mint=Pubkey.from_string(info["mint"]),
            mint_authority_keyfile=Path(info["mint_authority_keyfile"]),
            program_id=None if program is None else Pubkey.from_string(program),
            state_dir=Path(info["state_dir"]),
            process=proc,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def funded(chain: Chain, lamports: int = 10 * SOL) -> Keypair:
    """A new keypair holding ``lamports`` from the airdrop."""
    kp = Keypair()
    await chain.request_airdrop(kp.pubkey(), lamports)
    return kp
