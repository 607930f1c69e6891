"""Child-process plumbing for the CLI tests: a local chain (``dgpu chain serve``) with the
escrow initialized and funded parties, and ``dgpu provider start`` as a child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.money import ChainEscrow
from dgpu.node.executors.base import run_sync_abandoning
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity, save_identity
from solders.keypair import Keypair

from tests.contracts_client.support import Node
from tests.fixtures_docker import TEST_IMAGE

SOL = 10**9
PRICE_PER_HOUR = "7.2"  # dGPU per GPU-hour -> 2_000_000 base units per GPU-second
PRICE = 2_000_000
READY_TIMEOUT_S = 90.0
ROOT = Path(__file__).parents[2]


@dataclass
class LocalChain:
    node: Node
    chain: RpcChain
    client: EscrowClient
    escrow: ChainEscrow
    mint: localnet.TokenMint
    treasury: Identity

    async def fund(self, identity: Identity, tokens: int = 0) -> None:
        await localnet.fund_wallet(
            self.chain,
            identity.to_solders().pubkey(),
            lamports=10 * SOL,
            mint=self.mint,
            tokens=tokens,
        )

    async def tokens(self, identity: Identity) -> int:
        return await self.escrow.token_balance(identity.public_key, bytes(self.mint.address))


async def local_chain(node: Node) -> LocalChain:
    chain = RpcChain(node.url, confirm_timeout=30.0, poll_interval=0.05)
    client = EscrowClient(chain)
    authority = load_identity(node.mint_authority_keyfile).to_solders()
    world = LocalChain(
        node,
        chain,
        client,
        ChainEscrow(client),
        localnet.TokenMint(node.mint, authority),
        Identity.generate(),
    )
    admin = Keypair()
    await chain.request_airdrop(admin.pubkey(), 10 * SOL)
    await world.fund(world.treasury)
    await client.initialize(
        authority,  # the local chain deploys the escrow with its own authority
        admin=admin.pubkey(),
        payer=admin,
        treasury=world.treasury.to_solders().pubkey(),
        mints=[world.mint.address],
        fee_bps=500,
    )
    return world


def provider_args(world: LocalChain, identity: Identity, tmp_path: Path) -> list[str]:
    key = tmp_path / "provider.json"
    if not key.exists():
        save_identity(identity, key)
    return [
        *("--key", str(key), "--data-dir", str(tmp_path / "provider-data")),
        *("--rpc", world.node.url, "--mint", str(world.node.mint)),
        *("--gpus", "1xRTX 4090", "--json", "--allow-image", TEST_IMAGE),
        *("--interval", "1", "--grace", "2", "--price", PRICE_PER_HOUR),
        *("--max-duration", "600", "--offer-ttl", "120"),
        # tests outside a network lab stay on loopback (providers default to every interface)
        *("--listen", "/ip4/127.0.0.1/tcp/0"),
    ]


def dgpu(*args: str) -> list[str]:
    return [sys.executable, "-m", "dgpu.cli.main", *args]


@contextmanager
def provider_process(args: list[str], log_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``dgpu provider start ARGS`` (stderr to ``log_path``); SIGTERM on exit."""
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            dgpu("-v", "provider", "start", *args),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


async def ready_line(proc: subprocess.Popen[str], log_path: Path) -> dict[str, Any]:
    """The provider's JSON ready line (it is printed once recovery and the first
    advertisement are done)."""
    assert proc.stdout is not None
    with trio.move_on_after(READY_TIMEOUT_S):
        line = await run_sync_abandoning(proc.stdout.readline)
        if line:
            info: dict[str, Any] = json.loads(line)
            return info
    log_text = await trio.Path(log_path).read_text()
    raise AssertionError(f"provider did not get ready:\n{log_text[-3000:]}")
