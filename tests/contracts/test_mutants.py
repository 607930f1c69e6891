"""Mutation checks of issue 16's new checks: each is guarded in ``escrow.c`` by an
``#ifndef MUTANT_...``; a variant built with that define lacks exactly that check. For
each, a scenario that the shipped program passes must fail on the variant, so no new
check is untested. (Variants are built into a temporary directory, never shipped.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from dgpu.contracts import PROGRAM_ID, so_path
from dgpu.contracts.build import build
from dgpu.contracts_client import ChannelBounds, localnet
from dgpu.contracts_client.chain import TransactionFailed
from dgpu.contracts_client.instructions import initialize_ix, open_channel_ix
from dgpu.contracts_client.pda import channel_address, program_data_address
from solders.account import Account
from solders.keypair import Keypair

from tests.contracts.support import DGPU, DISPUTE_WINDOW, FEE_BPS, World, make_world, with_meta

CHANNEL_VERSION_OFFSET = 204  # 8 + 4 keys + 8 u64 + fee_bps u16 + bump + vault_bump
Scenario = Callable[[bytes], Awaitable[None]]


async def _refused(action: Awaitable[object], error: str, world: World) -> None:
    """``action`` must fail with the IDL error ``error``."""
    with pytest.raises(TransactionFailed) as refused:
        await action
    code = refused.value.custom_code
    known = world.client.idl.error(code) if code is not None else None
    assert known is not None and known[0] == error, refused.value


async def prefunded_channel_opens(program: bytes) -> None:
    world = await make_world(program=program)
    channel = channel_address(world.renter.pubkey, world.provider.pubkey, 3, PROGRAM_ID)
    await localnet.transfer_sol(world.chain, world.admin, channel, 1)
    await world.open(DGPU, channel_id=3)


async def stranger_cannot_initialize(program: bytes) -> None:
    world = await make_world(initialize=False, program=program)
    stranger = await world.party("stranger")
    ix = initialize_ix(stranger.pubkey, treasury=stranger.pubkey, mints=[world.mint.address])
    await _refused(world.send([ix], stranger.keypair), "NotUpgradeAuthority", world)


async def revoked_authority_cannot_initialize(program: bytes) -> None:
    world = await make_world(initialize=False, program=program)
    world.chain.ledger.install_program(
        PROGRAM_ID, program, upgrade_authority=world.admin.pubkey(), revoked=True
    )
    ix = initialize_ix(
        world.admin.pubkey(), treasury=world.admin.pubkey(), mints=[world.mint.address]
    )
    await _refused(world.send([ix], world.admin), "NotUpgradeAuthority", world)


async def other_program_data_is_refused(program: bytes) -> None:
    world = await make_world(initialize=False, program=program)
    stranger = await world.party("stranger")
    theirs = Keypair().pubkey()
    world.chain.ledger.install_program(theirs, program, upgrade_authority=stranger.pubkey)
    ix = initialize_ix(stranger.pubkey, treasury=stranger.pubkey, mints=[world.mint.address])
    ix = with_meta(ix, 3, pubkey=program_data_address(theirs))
    await _refused(world.send([ix], stranger.keypair), "BadProgramData", world)


async def _open_with(world: World, bounds: ChannelBounds) -> object:
    ix, _ = open_channel_ix(
        world.renter.pubkey,
        provider=world.provider.pubkey,
        mint=world.mint.address,
        channel_id=1,
        deposit=DGPU,
        expiry=await world.chain.unix_time() + 600,
        bounds=bounds,
    )
    return await world.send([ix], world.renter.keypair)


async def fee_bound_holds(program: bytes) -> None:
    world = await make_world(program=program)
    bounds = ChannelBounds(FEE_BPS - 1, DISPUTE_WINDOW)
    await _refused(_open_with(world, bounds), "FeeAboveBound", world)


async def window_bound_holds(program: bytes) -> None:
    world = await make_world(program=program)
    bounds = ChannelBounds(FEE_BPS, DISPUTE_WINDOW - 1)
    await _refused(_open_with(world, bounds), "DisputeWindowAboveBound", world)


async def unknown_layout_version_is_refused(program: bytes) -> None:
    world = await make_world(program=program)
    channel = await world.open(DGPU)
    account = await world.chain.get_account(channel.address)
    assert account is not None
    data = bytearray(bytes(account.data))
    assert data[CHANNEL_VERSION_OFFSET] == 1
    data[CHANNEL_VERSION_OFFSET] = 2
    world.chain.ledger.set_account(
        channel.address, Account(account.lamports, bytes(data), account.owner)
    )
    action = world.client.settle_batch(world.admin, [world.receipt(channel, DGPU)])
    await _refused(action, "BadChannel", world)


MUTANTS: dict[str, Scenario] = {
    "MUTANT_CREATE_IGNORES_LAMPORTS": prefunded_channel_opens,
    "MUTANT_ANY_AUTHORITY": stranger_cannot_initialize,
    "MUTANT_IGNORE_AUTHORITY_FLAG": revoked_authority_cannot_initialize,
    "MUTANT_ANY_PROGRAM_DATA": other_program_data_is_refused,
    "MUTANT_NO_FEE_BOUND": fee_bound_holds,
    "MUTANT_NO_WINDOW_BOUND": window_bound_holds,
    "MUTANT_ANY_VERSION": unknown_layout_version_is_refused,
}


def test_every_mutant_define_is_in_the_source() -> None:
    source = (so_path().parent / "escrow.c").read_text()
    guarded = {
        line.split()[1] for line in source.splitlines() if line.startswith("#ifndef MUTANT_")
    }
    assert guarded == set(MUTANTS)


@pytest.mark.parametrize("define", sorted(MUTANTS))
async def test_the_shipped_program_passes_and_the_mutant_fails(define: str, tmp_path: Path) -> None:
    scenario = MUTANTS[define]
    await scenario(so_path().read_bytes())
    mutant = build(tmp_path, defines=[define])
    assert mutant.so_path.read_bytes() != so_path().read_bytes()
    with pytest.raises((AssertionError, TransactionFailed, pytest.fail.Exception)):
        await scenario(mutant.so_path.read_bytes())
