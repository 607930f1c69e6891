"""The escrow happy path through ``dgpu chain serve`` and the JSON-RPC chain: the very
code path that talks to a real cluster (open a channel, sign a receipt, settle, settle
again harmlessly, refund after expiry plus the dispute window), from trio and asyncio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.errors import ChannelNotFound
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity
from solders.keypair import Keypair

from tests.contracts_client.support import SOL, Node, funded, serve_node

DEPOSIT = 1_000_000_000  # 1 dGPU
CUMULATIVE = 400_000_000


@dataclass(frozen=True)
class Escrowed:
    """A node whose escrow config is initialized, with the treasury's token account."""

    node: Node
    mint: localnet.TokenMint
    treasury: Keypair


def _warp(node: Node, seconds: int) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "dgpu_warp", "params": [seconds]}
    answer = httpx.post(node.url, content=json.dumps(body), timeout=30).json()
    assert "result" in answer, answer


@pytest.fixture(scope="module")
def escrowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Escrowed]:
    state_dir: Path = tmp_path_factory.mktemp("escrow-node")
    with serve_node(state_dir) as node:
        authority = load_identity(node.mint_authority_keyfile).to_solders()
        mint = localnet.TokenMint(node.mint, authority)
        treasury = Keypair()

        async def initialize() -> None:
            async with RpcChain(node.url, poll_interval=0.05) as chain:
                admin = await funded(chain)
                await localnet.fund_wallet(chain, treasury.pubkey(), mint=mint)
                await EscrowClient(chain).initialize(
                    authority,
                    admin=admin.pubkey(),
                    payer=admin,
                    treasury=treasury.pubkey(),
                    mints=[node.mint],
                )

        anyio.run(initialize, backend="trio")
        yield Escrowed(node, mint, treasury)


async def _happy_path(env: Escrowed) -> None:
    node, mint = env.node, env.mint
    async with RpcChain(node.url, poll_interval=0.05) as chain:
        escrow = EscrowClient(chain)
        renter_id = Identity.generate()
        renter = renter_id.to_solders()
        provider = Keypair()
        await chain.request_airdrop(renter.pubkey(), SOL)
        renter_ata = await localnet.fund_wallet(chain, renter.pubkey(), mint=mint, tokens=DEPOSIT)
        provider_ata = await localnet.fund_wallet(chain, provider.pubkey(), lamports=SOL, mint=mint)
        treasury_ata = localnet.associated_token_address(env.treasury.pubkey(), mint.address)
        assert renter_ata is not None and provider_ata is not None
        treasury_before = await chain.get_token_balance(treasury_ata)

        expiry = await chain.unix_time() + 3600
        opened = await escrow.open_channel(
            renter, provider=provider.pubkey(), mint=mint.address, deposit=DEPOSIT, expiry=expiry
        )
        channel = opened.state
        assert channel.deposit == DEPOSIT and channel.paid == 0
        assert await chain.get_token_balance(renter_ata) == 0
        assert await chain.get_token_balance(channel.vault) == DEPOSIT

        receipt = channel.receipt(CUMULATIVE, escrow.program_id)
        settlement = await escrow.settlement(channel.address, CUMULATIVE, receipt.sign(renter_id))
        await escrow.settle_batch(provider, [settlement])
        after = await escrow.read_channel(channel.address)
        assert after.paid + after.fees == CUMULATIVE
        assert after.fees == CUMULATIVE * after.fee_bps // 10_000
        assert await chain.get_token_balance(provider_ata) == after.paid

        # the same receipt again settles nothing more
        await escrow.settle_batch(provider, [settlement])
        assert await chain.get_token_balance(provider_ata) == after.paid

        _warp(node, channel.refund_after - await chain.unix_time() + 1)
        payer = await funded(chain, SOL)
        await escrow.refund(payer, channel.address)
        with pytest.raises(ChannelNotFound):
            await escrow.read_channel(channel.address)
        refunded = await chain.get_token_balance(renter_ata)
        fees = await chain.get_token_balance(treasury_ata) - treasury_before
        assert refunded == DEPOSIT - CUMULATIVE
        assert refunded + after.paid + fees == DEPOSIT  # conservation
        assert await chain.get_account(channel.vault) is None  # the vault was closed too


@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_escrow_happy_path_over_rpc(escrowed: Escrowed, loop: str) -> None:
    anyio.run(_happy_path, escrowed, backend=loop)
