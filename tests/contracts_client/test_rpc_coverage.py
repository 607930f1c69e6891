"""The JSON-RPC methods outside clients call in ordinary use, through those clients,
unmodified: anchorpy's ``program.account[...].all()`` and ``fetch`` over the escrow IDL
(getProgramAccounts with a memcmp filter), and solana-py's sync and async clients on the
history, block and token methods (their answers parsed by solders, so a wrong shape
fails here)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from anchorpy.program.core import Program
from anchorpy.provider import Provider, Wallet
from anchorpy_core.idl import Idl
from dgpu.contracts import PROGRAM_ID, idl_path
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.pda import config_address
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity
from solana.rpc.api import Client
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.types import DataSliceOpts, MemcmpOpts, TokenAccountOpts
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from spl.token.constants import TOKEN_PROGRAM_ID

from tests.contracts_client.support import SOL, Node, funded, serve_node

DEPOSIT = 1_000_000_000
CHANNEL_DISCRIMINATOR_LEN = 8


@dataclass(frozen=True)
class World:
    node: Node
    mint: Pubkey
    renter: Pubkey
    provider: Pubkey
    channels: tuple[Pubkey, ...]
    open_signature: Signature


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serve_node(tmp_path_factory.mktemp("coverage-node")) as node:
        authority = load_identity(node.mint_authority_keyfile).to_solders()
        mint = localnet.TokenMint(node.mint, authority)

        async def build() -> World:
            async with RpcChain(node.url, poll_interval=0.05) as chain:
                escrow = EscrowClient(chain)
                admin, treasury = await funded(chain), Keypair()
                await localnet.fund_wallet(chain, treasury.pubkey(), mint=mint)
                await escrow.initialize(
                    authority, admin=admin.pubkey(), treasury=treasury.pubkey(), mints=[node.mint]
                )
                renter = Identity.generate().to_solders()
                await chain.request_airdrop(renter.pubkey(), SOL)
                await localnet.fund_wallet(chain, renter.pubkey(), mint=mint, tokens=2 * DEPOSIT)
                expiry = await chain.unix_time() + 3600
                channels = []
                sig = None
                for _ in range(2):
                    provider = Keypair()
                    opened = await escrow.open_channel(
                        renter,
                        provider=provider.pubkey(),
                        mint=mint.address,
                        deposit=DEPOSIT,
                        expiry=expiry,
                    )
                    channels.append(opened.state.address)
                    sig = opened.signature
                assert sig is not None
                return World(
                    node, node.mint, renter.pubkey(), provider.pubkey(), tuple(channels), sig
                )

        yield anyio.run(build, backend="trio")


def test_anchorpy_account_all_and_fetch(world: World) -> None:
    async def main() -> None:
        idl = Idl.from_json(idl_path().read_text())
        async with AsyncClient(world.node.url, commitment=Confirmed) as client:
            program = Program(idl, PROGRAM_ID, Provider(client, Wallet(Keypair())))
            channels = await program.account["Channel"].all()
            assert {c.public_key for c in channels} == set(world.channels)
            assert all(c.account.deposit == DEPOSIT for c in channels)
            # a memcmp filter on the provider field, as anchorpy users write it
            offset = CHANNEL_DISCRIMINATOR_LEN + 32  # renter, then provider
            mine = await program.account["Channel"].all(
                filters=[MemcmpOpts(offset=offset, bytes=str(world.provider))]
            )
            assert [c.public_key for c in mine] == [world.channels[-1]]
            fetched = await program.account["Channel"].fetch(world.channels[0])
            assert fetched.renter == world.renter
            config = await program.account["Config"].fetch(config_address())
            assert world.mint in config.mints[: config.mint_count]

    asyncio.run(main())


def test_solana_py_sync_history_and_tokens(world: World) -> None:
    client = Client(world.node.url, commitment=Confirmed)
    sigs = client.get_signatures_for_address(world.channels[-1]).value
    assert [s.signature for s in sigs] == [world.open_signature]
    tx = client.get_transaction(world.open_signature, max_supported_transaction_version=0).value
    assert tx is not None and tx.transaction.meta is not None
    meta = tx.transaction.meta
    assert meta.err is None and meta.compute_units_consumed
    assert len(meta.pre_balances) == len(meta.post_balances) > 0
    assert meta.pre_token_balances is not None and meta.post_token_balances is not None
    vault_after = [b for b in meta.post_token_balances if b.ui_token_amount.amount == "1000000000"]
    assert vault_after, meta.post_token_balances
    assert any("escrow" in line for line in meta.log_messages or [])
    parsed = client.get_transaction(
        world.open_signature, encoding="jsonParsed", max_supported_transaction_version=0
    ).value
    assert parsed is not None

    block = client.get_block(tx.slot, max_supported_transaction_version=0).value
    assert block.transactions is not None
    assert block.transactions[0].transaction.signatures[0] == world.open_signature
    assert block.parent_slot == tx.slot - 1
    assert tx.slot in client.get_blocks(tx.slot - 2, tx.slot).value
    assert client.get_first_available_block().value <= tx.slot
    assert client.get_transaction_count().value >= len(sigs)

    owned = client.get_token_accounts_by_owner(
        world.renter, TokenAccountOpts(mint=world.mint)
    ).value
    assert len(owned) == 1
    parsed_owned = client.get_token_accounts_by_owner_json_parsed(
        world.renter, TokenAccountOpts(program_id=TOKEN_PROGRAM_ID)
    ).value
    info: Any = parsed_owned[0].account.data.parsed["info"]  # JSON
    assert info["owner"] == str(world.renter) and info["tokenAmount"]["amount"] == "0"
    supply = client.get_token_supply(world.mint).value
    assert int(supply.amount) >= 2 * DEPOSIT and supply.decimals == 9
    largest = client.get_token_largest_accounts(world.mint).value
    assert [int(a.amount.amount) for a in largest] == sorted(
        (int(a.amount.amount) for a in largest), reverse=True
    )


def test_solana_py_async_program_accounts(world: World) -> None:
    async def main() -> None:
        async with AsyncClient(world.node.url, commitment=Confirmed) as client:
            found = (
                await client.get_program_accounts(
                    PROGRAM_ID,
                    encoding="base64",
                    data_slice=DataSliceOpts(offset=0, length=8),
                    filters=[MemcmpOpts(offset=8, bytes=str(world.renter))],
                )
            ).value
            assert {f.pubkey for f in found} == set(world.channels)
            assert all(len(f.account.data) == 8 for f in found)  # the slice
            vaults = (
                await client.get_program_accounts(
                    TOKEN_PROGRAM_ID, encoding="base64", filters=[165]
                )
            ).value
            assert len(vaults) >= 2 + 2  # two vaults, renter and treasury accounts
            info = await client.get_account_info_json_parsed(world.mint)
            assert info.value is not None
            parsed: Any = info.value.data.parsed  # type: ignore[union-attr]  # JSON
            assert parsed["type"] == "mint" and parsed["info"]["decimals"] == 9
            genesis = (await client.get_genesis_hash()).value
            assert str(genesis) == str((await client.get_genesis_hash()).value)

    asyncio.run(main())


def test_single_node_cluster_methods_parse_in_solana_py(world: World) -> None:
    """Answered as solana-test-validator answers them; solders parses every shape."""
    client = Client(world.node.url, commitment=Confirmed)
    me = client.get_identity().value.identity
    nodes = [json.loads(n.to_json()) for n in client.get_cluster_nodes().value]
    assert [n["pubkey"] for n in nodes] == [str(me)]
    assert client.get_slot_leader().value == me
    schedule = client.get_leader_schedule().value
    assert schedule is not None and list(schedule) == [me]
    assert client.get_epoch_schedule().value.slots_per_epoch == 432_000
    assert client.get_vote_accounts().value.current == []
    supply = client.get_supply().value
    assert supply.total == supply.circulating > 0
    assert client.get_inflation_rate().value.total == 0.0
    assert client.get_inflation_governor().value.initial == 0.0
    assert client.get_recent_performance_samples().value == []
    assert client.get_block_commitment(1).value.total_stake == 0
    assert client.get_first_available_block().value <= client.get_slot().value
    # methods solana-py has no wrapper for, read raw
    for method, params in (
        ("getSlotLeaders", [1, 3]),
        ("getRecentPrioritizationFees", [[str(world.mint)]]),
        ("getStakeMinimumDelegation", []),
        ("getMaxRetransmitSlot", []),
        ("minimumLedgerSlot", []),
    ):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        assert "result" in httpx.post(world.node.url, json=body, timeout=30).json(), method
