"""Attacks through accounts, signatures, the config and arithmetic: every one is refused by
the real program and no token moves."""

from __future__ import annotations

from dgpu.contracts import PROGRAM_ID
from dgpu.contracts_client import Settlement, localnet, settle_instructions
from dgpu.contracts_client.instructions import (
    cooperative_close_ix,
    initialize_ix,
    open_channel_ix,
    refund_ix,
    top_up_ix,
    update_config_ix,
)
from dgpu.contracts_client.pda import associated_token_address, vault_address
from dgpu.protocol.receipt import ReceiptBody
from solders.account import Account
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

from tests.contracts.support import DGPU, SOL, World, expect_refused, with_meta

I64_MAX = 2**63 - 1
U64_MAX = 2**64 - 1


async def copy_account(world: World, source: Pubkey, owner: Pubkey) -> Pubkey:
    """A new address holding ``source``'s exact bytes, owned by ``owner``."""
    account = await world.chain.get_account(source)
    assert account is not None
    fake = Pubkey.new_unique()
    world.chain.ledger.set_account(fake, Account(account.lamports, bytes(account.data), owner))
    return fake


# -- mint, vault, provider account ---------------------------------------------------------


async def test_mint_outside_the_allow_list_is_refused(world: World) -> None:
    other = await localnet.create_mint(world.chain, world.admin)
    token = await localnet.fund_wallet(world.chain, world.renter.pubkey, mint=other, tokens=DGPU)
    assert token is not None
    now = await world.chain.unix_time()
    ix, _ = open_channel_ix(
        world.renter.pubkey,
        provider=world.provider.pubkey,
        mint=other.address,
        channel_id=1,
        deposit=DGPU,
        expiry=now + 60,
        renter_token=token,
    )
    attempt = world.send([ix], world.renter.keypair)
    await expect_refused(world, "MintNotAllowed", attempt, watch=[token])


async def test_provider_account_of_another_mint_or_owner_is_refused(world: World) -> None:
    channel = await world.open()
    other = await localnet.create_mint(world.chain, world.admin)
    other_token = await localnet.fund_wallet(world.chain, world.provider.pubkey, mint=other)
    stranger = await world.party("stranger")
    assert other_token is not None
    for wrong in (other_token, stranger.token, world.renter.token, channel.vault):
        precompile, settle = settle_instructions([world.receipt(channel, DGPU)])
        attempt = world.send([precompile, with_meta(settle, 4, pubkey=wrong)], world.admin)
        await expect_refused(world, "BadTokenAccount", attempt, watch=[stranger.token])


async def test_vault_of_another_channel_is_refused(world: World) -> None:
    a, b = await world.open(), await world.open()
    precompile, settle = settle_instructions([world.receipt(a, DGPU)])
    attempt = world.send([precompile, with_meta(settle, 3, pubkey=b.vault)], world.admin)
    await expect_refused(world, "BadVault", attempt)

    now = await world.chain.unix_time()
    ix, channel = open_channel_ix(
        world.renter.pubkey,
        provider=world.provider.pubkey,
        mint=world.mint.address,
        channel_id=5,
        deposit=DGPU,
        expiry=now + 60,
    )
    assert ix.accounts[5].pubkey == vault_address(channel)
    attempt = world.send([with_meta(ix, 5, pubkey=a.vault)], world.renter.keypair)
    await expect_refused(world, "BadVault", attempt)


async def test_treasury_account_must_belong_to_the_treasury(world: World) -> None:
    channel = await world.open(expires_in=10)
    world.chain.warp(10 + 3_600)
    stranger = await world.party("stranger")
    ix = refund_ix(channel, world.treasury.pubkey, treasury_token=stranger.token)
    attempt = world.send([ix], world.admin)
    await expect_refused(world, "BadTokenAccount", attempt, watch=[stranger.token])


# -- time ------------------------------------------------------------------------------------


async def test_refund_before_expiry_is_refused(world: World) -> None:
    channel = await world.open(expires_in=600)
    ix = refund_ix(channel, world.treasury.pubkey)
    await expect_refused(world, "NotExpired", world.send([ix], world.admin))
    world.chain.warp(600 + 3_599)  # one second before expiry plus the dispute window
    await expect_refused(world, "NotExpired", world.send([ix], world.admin))


async def test_refund_twice_is_refused(world: World) -> None:
    channel = await world.open(expires_in=10)
    world.chain.warp(10 + 3_600)
    await world.client.refund(world.admin, channel.address)
    world.channels.remove(channel)
    ix = refund_ix(channel, world.treasury.pubkey)
    await expect_refused(world, "BadChannel", world.send([ix], world.admin))


async def test_expiry_in_the_past_or_too_far_is_refused(world: World) -> None:
    now = await world.chain.unix_time()
    for expiry in (now, now - 1, I64_MAX):
        ix, _ = open_channel_ix(
            world.renter.pubkey,
            provider=world.provider.pubkey,
            mint=world.mint.address,
            channel_id=3,
            deposit=DGPU,
            expiry=expiry,
        )
        await expect_refused(world, "BadExpiry", world.send([ix], world.renter.keypair))
    channel = await world.open()
    earlier = top_up_ix(channel, DGPU, expiry=channel.expiry - 1)
    await expect_refused(world, "BadExpiry", world.send([earlier], world.renter.keypair))


# -- signatures and authority ---------------------------------------------------------------


async def test_cooperative_close_needs_both_signatures(world: World) -> None:
    channel = await world.open()
    ix = cooperative_close_ix(channel, 2 * DGPU, world.treasury.pubkey)
    renter, provider = world.renter.keypair, world.provider.keypair
    only_renter = world.send_unchecked([with_meta(ix, 1, is_signer=False)], renter)
    await expect_refused(world, "MissingSignature", only_renter)
    only_provider = world.send_unchecked([with_meta(ix, 0, is_signer=False)], provider)
    await expect_refused(world, "MissingSignature", only_provider)
    stranger = await world.party("stranger")
    impostor = with_meta(ix, 1, pubkey=stranger.pubkey)
    attempt = world.send_unchecked([impostor], renter, stranger.keypair)
    await expect_refused(world, "Unauthorized", attempt)


async def test_missing_signatures_are_refused(world: World) -> None:
    now = await world.chain.unix_time()
    ix, _ = open_channel_ix(
        world.renter.pubkey,
        provider=world.provider.pubkey,
        mint=world.mint.address,
        channel_id=8,
        deposit=DGPU,
        expiry=now + 60,
    )
    unsigned_open = world.send_unchecked([with_meta(ix, 0, is_signer=False)], world.admin)
    await expect_refused(world, "MissingSignature", unsigned_open)

    channel = await world.open()
    top_up = with_meta(top_up_ix(channel, DGPU), 0, is_signer=False)
    await expect_refused(world, "MissingSignature", world.send_unchecked([top_up], world.admin))

    update = update_config_ix(
        world.admin.pubkey(),
        new_admin=world.admin.pubkey(),
        settler=world.admin.pubkey(),
        treasury=world.admin.pubkey(),
        fee_bps=0,
        dispute_window=0,
        mints=[world.mint.address],
    )
    stranger = await world.party("stranger")
    attempt = world.send_unchecked([with_meta(update, 0, is_signer=False)], stranger.keypair)
    await expect_refused(world, "MissingSignature", attempt)


async def test_top_up_by_someone_else_is_refused(world: World) -> None:
    channel = await world.open()
    stranger = await world.party("stranger", tokens=DGPU)
    ix = with_meta(top_up_ix(channel, DGPU, renter_token=stranger.token), 0, pubkey=stranger.pubkey)
    attempt = world.send([ix], stranger.keypair)
    await expect_refused(world, "Unauthorized", attempt, watch=[stranger.token])


async def test_config_changes_by_a_non_admin_are_refused(world: World) -> None:
    stranger = await world.party("stranger")
    config_before = await world.client.read_config()
    ix = update_config_ix(
        stranger.pubkey,
        new_admin=stranger.pubkey,
        settler=stranger.pubkey,
        treasury=stranger.pubkey,
        fee_bps=10_000,
        dispute_window=0,
        mints=[world.mint.address],
    )
    await expect_refused(world, "Unauthorized", world.send([ix], stranger.keypair))
    again = initialize_ix(stranger.pubkey, treasury=stranger.pubkey, mints=[world.mint.address])
    await expect_refused(world, "NotUpgradeAuthority", world.send([again], stranger.keypair))
    again = initialize_ix(
        world.admin.pubkey(), treasury=stranger.pubkey, mints=[world.mint.address]
    )
    await expect_refused(world, "AlreadyInitialized", world.send([again], world.admin))
    assert await world.client.read_config() == config_before


async def test_config_values_are_validated(world: World) -> None:
    admin = world.admin.pubkey()
    many = [Pubkey.new_unique() for _ in range(5)]
    for mints, fee, window, error in (
        ([world.mint.address], 10_001, 0, "BadFee"),
        ([], 500, 0, "BadMintList"),
        (many, 500, 0, "BadMintList"),
        ([world.mint.address], 500, -1, "BadDisputeWindow"),
    ):
        ix = update_config_ix(
            admin,
            new_admin=admin,
            settler=admin,
            treasury=admin,
            fee_bps=fee,
            dispute_window=window,
            mints=mints,
        )
        await expect_refused(world, error, world.send([ix], world.admin))


# -- arithmetic ------------------------------------------------------------------------------


async def test_deposit_overflow_is_refused(world: World) -> None:
    channel = await world.open(10 * DGPU)
    ix = top_up_ix(channel, U64_MAX - 10 * DGPU + 1)
    await expect_refused(world, "Overflow", world.send([ix], world.renter.keypair))
    ix = top_up_ix(channel, 0)
    await expect_refused(world, "ZeroAmount", world.send([ix], world.renter.keypair))


# -- accounts owned by the wrong program ---------------------------------------------------


async def test_channel_not_owned_by_the_program_is_refused(world: World) -> None:
    channel = await world.open()
    for owner in (SYSTEM_PROGRAM_ID, Pubkey.new_unique()):
        fake = await copy_account(world, channel.address, owner)
        body = ReceiptBody(bytes(PROGRAM_ID), bytes(fake), channel.open_nonce, DGPU)
        item = world.receipt(channel, DGPU)
        forged = Settlement(
            fake,
            channel.vault,
            item.provider_token,
            channel.renter,
            body,
            body.sign(world.renter.identity),
        )
        attempt = world.client.settle_batch(world.admin, [forged])
        await expect_refused(world, "BadChannel", attempt)


async def test_config_not_owned_by_the_program_is_refused(world: World) -> None:
    stranger = await world.party("stranger")
    channel = await world.open(expires_in=10)
    world.chain.warp(10 + 3_600)
    fake_config = await copy_account(world, world.client.config_address, Pubkey.new_unique())
    ix = with_meta(refund_ix(channel, world.treasury.pubkey), 4, pubkey=fake_config)
    await expect_refused(world, "BadConfig", world.send([ix], stranger.keypair))


async def test_token_account_not_owned_by_the_token_program_is_refused(world: World) -> None:
    channel = await world.open()
    fake = await copy_account(world, world.provider.token, Pubkey.new_unique())
    precompile, settle = settle_instructions([world.receipt(channel, DGPU)])
    attempt = world.send([precompile, with_meta(settle, 4, pubkey=fake)], world.admin)
    await expect_refused(world, "BadTokenAccount", attempt, watch=[fake])


async def test_fake_sysvar_and_program_accounts_are_refused(world: World) -> None:
    channel = await world.open()
    precompile, settle = settle_instructions([world.receipt(channel, DGPU)])
    fake_sysvar = await copy_account(world, world.provider.token, SYSTEM_PROGRAM_ID)
    attempt = world.send([precompile, with_meta(settle, 0, pubkey=fake_sysvar)], world.admin)
    await expect_refused(world, "BadSysvar", attempt)
    impostor = Pubkey.new_unique()
    world.chain.ledger.set_account(impostor, Account(SOL, b"", SYSTEM_PROGRAM_ID))
    attempt = world.send([precompile, with_meta(settle, 1, pubkey=impostor)], world.admin)
    await expect_refused(world, "BadProgram", attempt)
    assert associated_token_address(channel.provider, channel.mint) == world.provider.token
