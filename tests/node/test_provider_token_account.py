"""``dgpu provider start`` creates the provider's token account for the mint when it has
none (the escrow pays a provider only into a token account it owns), and says so in words
when it cannot (no SOL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from dgpu.contracts_client.localnet import associated_token_address
from dgpu.protocol.identity import Identity

from tests.contracts_client.support import Node, serve_node
from tests.node.clikit import SOL, dgpu, local_chain, provider_args, provider_process, ready_line

pytestmark = [pytest.mark.slow]


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[Node]:
    with serve_node(tmp_path / "chain") as node:
        yield node


async def test_provider_creates_its_token_account(tmp_path: Path, chain_node: Node) -> None:
    world = await local_chain(chain_node)
    provider = Identity.generate()
    owner = provider.to_solders().pubkey()
    await world.chain.request_airdrop(owner, 10 * SOL)  # SOL only, no token account
    account = associated_token_address(owner, world.mint.address)
    assert await world.chain.get_account(account) is None
    args = [*provider_args(world, provider, tmp_path), "--executor", "local"]
    with provider_process(args, tmp_path / "provider.log") as proc:
        await ready_line(proc, tmp_path / "provider.log")
    assert await world.chain.get_account(account) is not None


async def test_provider_without_sol_is_told_why(tmp_path: Path, chain_node: Node) -> None:
    world = await local_chain(chain_node)
    args = [*provider_args(world, Identity.generate(), tmp_path), "--executor", "local"]
    with trio.fail_after(120):
        done = await trio.run_process(
            dgpu("provider", "start", *args), capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode != 0
    assert "token account" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
