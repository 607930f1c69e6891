"""Griefing by pre-funding: anyone may send lamports to an address before the program
creates an account there (the config, a channel, a vault: all computable in advance). The
program must create the account anyway: top up to the rent-exempt minimum, allocate, assign.
"""

from __future__ import annotations

import pytest
from dgpu.contracts_client import localnet
from dgpu.contracts_client.instructions import open_channel_ix
from dgpu.contracts_client.pda import channel_address, config_address, vault_address
from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_PROGRAM_ID

from tests.contracts.support import (
    DGPU,
    DISPUTE_WINDOW,
    FEE_BPS,
    RENTER_TOKENS,
    SOL,
    World,
    expect_refused,
    make_world,
)

CONFIG_LEN = 256
CHANNEL_LEN = 208
TOKEN_ACCOUNT_LEN = 165


async def _gift(world: World, address: Pubkey, lamports: int) -> None:
    griefer = await world.party("griefer")
    await localnet.transfer_sol(world.chain, griefer.keypair, address, lamports)


async def _gift_amounts(world: World, size: int) -> list[int]:
    rent = await world.chain.minimum_balance_for_rent_exemption(size)
    return [1, rent - 1, rent, rent + SOL]


@pytest.mark.parametrize("which", [0, 1, 2, 3])
async def test_a_prefunded_config_address_does_not_block_initialize(which: int) -> None:
    world = await make_world(initialize=False)
    address = config_address(world.client.program_id)
    rent = await world.chain.minimum_balance_for_rent_exemption(CONFIG_LEN)
    gift = (await _gift_amounts(world, CONFIG_LEN))[which]
    await _gift(world, address, gift)
    admin_before = await world.chain.get_balance(world.admin.pubkey())
    sig = await world.initialize()
    config = await world.client.read_config()
    assert (config.admin, config.fee_bps, config.dispute_window) == (
        world.admin.pubkey(),
        FEE_BPS,
        DISPUTE_WINDOW,
    )
    account = await world.chain.get_account(address)
    assert account is not None
    assert account.owner == world.client.program_id and len(account.data) == CONFIG_LEN
    assert account.lamports == max(gift, rent)
    (landed,) = world.chain.ledger.statuses([sig])
    assert landed is not None
    paid = admin_before - await world.chain.get_balance(world.admin.pubkey())
    assert paid == landed.fee + max(rent - gift, 0)  # the admin pays only the shortfall


@pytest.mark.parametrize("which", [0, 1, 2, 3])
@pytest.mark.parametrize("target", ["channel", "vault", "both"])
async def test_prefunded_channel_and_vault_addresses_do_not_block_open(
    world: World, target: str, which: int
) -> None:
    program = world.client.program_id
    channel = channel_address(world.renter.pubkey, world.provider.pubkey, 42, program)
    vault = vault_address(channel, program)
    gifts = {
        channel: (await _gift_amounts(world, CHANNEL_LEN))[which] if target != "vault" else 0,
        vault: (await _gift_amounts(world, TOKEN_ACCOUNT_LEN))[which] if target != "channel" else 0,
    }
    for address, lamports in gifts.items():
        if lamports:
            await _gift(world, address, lamports)
    state = await world.open(10 * DGPU, channel_id=42)
    assert state.address == channel and state.vault == vault
    assert state.deposit == 10 * DGPU
    assert await world.chain.get_token_balance(vault) == 10 * DGPU
    assert await world.chain.get_token_balance(world.renter.token) == RENTER_TOKENS - 10 * DGPU
    for address, size, owner in (
        (channel, CHANNEL_LEN, program),
        (vault, TOKEN_ACCOUNT_LEN, TOKEN_PROGRAM_ID),
    ):
        account = await world.chain.get_account(address)
        assert account is not None
        rent = await world.chain.minimum_balance_for_rent_exemption(size)
        assert account.owner == owner and len(account.data) == size
        assert account.lamports == max(gifts[address], rent)


async def test_a_prefunded_channel_refunds_every_lamport_to_the_renter(world: World) -> None:
    program = world.client.program_id
    channel = channel_address(world.renter.pubkey, world.provider.pubkey, 9, program)
    await _gift(world, channel, 3 * SOL)
    state = await world.open(10 * DGPU, channel_id=9, expires_in=60)
    world.chain.warp(60 + DISPUTE_WINDOW + 1)
    renter_before = await world.chain.get_balance(world.renter.pubkey)
    held = sum(
        a.lamports
        for a in await world.chain.get_multiple_accounts([state.address, state.vault])
        if a is not None
    )
    await world.client.refund(world.admin, state.address)
    assert await world.chain.get_account(state.address) is None
    assert await world.chain.get_balance(world.renter.pubkey) == renter_before + held
    assert await world.chain.get_token_balance(world.renter.token) == RENTER_TOKENS


async def test_an_address_holding_data_still_cannot_be_opened_over(world: World) -> None:
    """A channel that exists is not re-created: the second open of the same id fails."""
    await world.open(10 * DGPU, channel_id=5)
    ix, _ = open_channel_ix(
        world.renter.pubkey,
        provider=world.provider.pubkey,
        mint=world.mint.address,
        channel_id=5,
        deposit=DGPU,
        expiry=await world.chain.unix_time() + 600,
    )
    await expect_refused(world, None, world.send([ix], world.renter.keypair))
