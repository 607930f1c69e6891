"""The escrow's normal life against the real ``.so`` in LiteSVM: open, settle (single and
batched, with and without a lookup table), top up, close together, refund after expiry."""

from __future__ import annotations

import anyio
import pytest
from dgpu.contracts import PROGRAM_ID
from dgpu.contracts_client import (
    BatchTooLarge,
    ChannelNotFound,
    EscrowProgramError,
    lookup_table_entries,
    receipts_per_transaction,
    settle_transaction,
)
from solders.message import MessageV0

from tests.contracts.support import (
    DGPU,
    DISPUTE_WINDOW,
    FEE_BPS,
    RENTER_TOKENS,
    SOL,
    World,
    make_world,
)

MAX_CU_PER_RECEIPT = 10_000


def fee(amount: int, bps: int = FEE_BPS) -> int:
    return amount * bps // 10_000


async def test_open_records_terms_and_funds_the_vault(world: World) -> None:
    channel = await world.open(10 * DGPU, expires_in=7_200, channel_id=7)
    assert channel.renter == world.renter.pubkey
    assert channel.provider == world.provider.pubkey
    assert channel.mint == world.mint.address
    assert channel.channel_id == 7
    assert (channel.deposit, channel.settled, channel.paid, channel.fees) == (10 * DGPU, 0, 0, 0)
    assert channel.open_nonce == 1
    assert channel.fee_bps == FEE_BPS
    assert channel.dispute_window == DISPUTE_WINDOW
    assert channel.expiry == await world.chain.unix_time() + 7_200
    assert await world.chain.get_token_balance(channel.vault) == 10 * DGPU
    assert await world.chain.get_token_balance(world.renter.token) == RENTER_TOKENS - 10 * DGPU
    config = await world.client.read_config()
    assert config.channels_opened == 1
    assert (config.version, channel.version) == (1, 1)  # the layout version byte


async def test_open_logs_no_debug_numbers(world: World) -> None:
    now = await world.chain.unix_time()
    opened = await world.client.open_channel(
        world.renter.keypair,
        provider=world.provider.pubkey,
        mint=world.mint.address,
        deposit=DGPU,
        expiry=now + 600,
    )
    logs = world.logs(opened.signature)
    assert "Program log: escrow: channel opened" in logs
    assert not [line for line in logs if line.startswith("Program log: 0x")]  # sol_log_64_


async def test_settle_pays_the_increment_minus_fee_and_raises_the_mark(world: World) -> None:
    channel = await world.open(10 * DGPU)
    sig = await world.client.settle_batch(world.admin, [world.receipt(channel, 2 * DGPU)])
    assert world.units(sig) < MAX_CU_PER_RECEIPT
    state = await world.client.read_channel(channel.address)
    assert (state.settled, state.paid, state.fees) == (
        2 * DGPU,
        2 * DGPU - fee(2 * DGPU),
        fee(2 * DGPU),
    )
    assert await world.chain.get_token_balance(world.provider.token) == state.paid

    # a higher receipt pays only the difference; fees follow the cumulative amount
    await world.client.settle_batch(world.provider.keypair, [world.receipt(channel, 5 * DGPU + 3)])
    state = await world.client.read_channel(channel.address)
    assert state.settled == 5 * DGPU + 3
    assert state.fees == fee(5 * DGPU + 3)
    assert state.paid == state.settled - state.fees
    assert await world.chain.get_token_balance(world.provider.token) == state.paid
    assert await world.chain.get_token_balance(channel.vault) == 10 * DGPU - state.paid


async def test_settling_the_same_receipt_twice_is_harmless(world: World) -> None:
    channel = await world.open()
    receipt = world.receipt(channel, DGPU)
    await world.client.settle_batch(world.admin, [receipt])
    before = await world.token_balances()
    sig = await world.client.settle_batch(world.admin, [receipt])
    assert await world.token_balances() == before
    assert any("not above the settled mark" in line for line in world.logs(sig))


async def test_batch_of_three_without_lookup_table(world: World) -> None:
    limit = receipts_per_transaction(with_lookup_table=False)
    assert limit == 3
    channels = [await world.open(5 * DGPU) for _ in range(limit)]
    items = [world.receipt(c, (i + 1) * DGPU) for i, c in enumerate(channels)]
    sig = await world.client.settle_batch(world.admin, items)
    assert world.units(sig) <= MAX_CU_PER_RECEIPT * limit
    total = sum((i + 1) * DGPU for i in range(limit))
    provider = await world.chain.get_token_balance(world.provider.token)
    assert provider == sum((i + 1) * DGPU - fee((i + 1) * DGPU) for i in range(limit))
    assert provider + sum(fee((i + 1) * DGPU) for i in range(limit)) == total


async def test_batch_with_lookup_table_is_a_v0_message(world: World) -> None:
    limit = receipts_per_transaction(with_lookup_table=True)
    assert limit >= 4
    channels = [await world.open(5 * DGPU) for _ in range(limit)]
    items = [world.receipt(c, DGPU + i) for i, c in enumerate(channels)]
    table = await world.client.create_lookup_table(world.admin, lookup_table_entries(items))
    assert set(lookup_table_entries(items)) <= set(table.addresses)

    tx = settle_transaction(world.admin, items, await world.chain.latest_blockhash(), table)
    assert isinstance(tx.message, MessageV0)
    assert len(tx.message.address_table_lookups) == 1
    sig = await world.client.settle_batch(world.admin, items, lookup_table=table)
    assert world.units(sig) <= MAX_CU_PER_RECEIPT * limit
    for item, channel in zip(items, channels, strict=True):
        state = await world.client.read_channel(channel.address)
        assert state.settled == item.body.cumulative

    with pytest.raises(BatchTooLarge):
        settle_transaction(world.admin, items * 2, await world.chain.latest_blockhash(), table)


async def test_one_channel_twice_in_a_batch_settles_in_order(world: World) -> None:
    channel = await world.open()
    items = [world.receipt(channel, DGPU), world.receipt(channel, 3 * DGPU)]
    await world.client.settle_batch(world.admin, items)
    state = await world.client.read_channel(channel.address)
    assert state.settled == 3 * DGPU
    assert await world.chain.get_token_balance(world.provider.token) == 3 * DGPU - fee(3 * DGPU)


async def test_top_up_adds_to_the_deposit_and_extends_expiry(world: World) -> None:
    channel = await world.open(DGPU)
    await world.client.top_up(
        world.renter.keypair, channel.address, 2 * DGPU, expiry=channel.expiry + 600
    )
    state = await world.client.read_channel(channel.address)
    assert state.deposit == 3 * DGPU
    assert state.expiry == channel.expiry + 600
    assert await world.chain.get_token_balance(channel.vault) == 3 * DGPU
    # the larger deposit now covers a receipt the first one could not
    await world.client.settle_batch(world.admin, [world.receipt(channel, 2 * DGPU + 5)])
    assert (await world.client.read_channel(channel.address)).settled == 2 * DGPU + 5


async def test_cooperative_close_settles_refunds_and_deletes(world: World) -> None:
    channel = await world.open(10 * DGPU)
    await world.client.settle_batch(world.admin, [world.receipt(channel, DGPU)])
    renter_lamports = await world.chain.get_balance(world.renter.pubkey)
    await world.client.cooperative_close(
        world.renter.keypair,
        world.provider.keypair,
        channel.address,
        4 * DGPU,
        payer=world.admin,
    )
    assert await world.chain.get_token_balance(world.provider.token) == 4 * DGPU - fee(4 * DGPU)
    assert await world.chain.get_token_balance(world.treasury.token) == fee(4 * DGPU)
    assert await world.chain.get_token_balance(world.renter.token) == RENTER_TOKENS - 4 * DGPU
    # the rent of the channel and of the vault came back to the renter
    assert await world.chain.get_balance(world.renter.pubkey) > renter_lamports
    assert await world.chain.get_account(channel.vault) is None
    with pytest.raises(ChannelNotFound):
        await world.client.read_channel(channel.address)


async def test_refund_after_expiry_and_dispute_window(world: World) -> None:
    channel = await world.open(10 * DGPU, expires_in=100)
    await world.client.settle_batch(world.admin, [world.receipt(channel, 3 * DGPU)])
    world.chain.warp(100)  # expired, but the dispute window is still open
    with pytest.raises(EscrowProgramError) as refused:
        await world.client.refund(world.admin, channel.address)
    assert refused.value.name == "NotExpired"
    # the provider may still settle during the window
    await world.client.settle_batch(world.provider.keypair, [world.receipt(channel, 4 * DGPU)])

    world.chain.warp(DISPUTE_WINDOW)
    stranger = (await world.party("stranger")).keypair
    await world.client.refund(stranger, channel.address)
    assert await world.chain.get_token_balance(world.renter.token) == RENTER_TOKENS - 4 * DGPU
    assert await world.chain.get_token_balance(world.treasury.token) == fee(4 * DGPU)
    assert await world.chain.get_token_balance(world.provider.token) == 4 * DGPU - fee(4 * DGPU)
    assert await world.chain.get_account(channel.address) is None


async def test_reopening_the_same_address_gets_a_fresh_nonce(world: World) -> None:
    first = await world.open(DGPU, channel_id=99)
    await world.client.cooperative_close(
        world.renter.keypair, world.provider.keypair, first.address, 0
    )
    second = await world.open(DGPU, channel_id=99)
    assert second.address == first.address
    assert second.open_nonce > first.open_nonce


async def test_config_update_by_admin_applies_to_new_channels_only(world: World) -> None:
    old = await world.open(10 * DGPU)
    await world.client.update_config(world.admin, fee_bps=1_000, dispute_window=60)
    config = await world.client.read_config()
    assert (config.fee_bps, config.dispute_window) == (1_000, 60)
    new = await world.open(10 * DGPU)
    assert (old.fee_bps, new.fee_bps) == (FEE_BPS, 1_000)
    await world.client.settle_batch(
        world.admin, [world.receipt(old, DGPU), world.receipt(new, DGPU)]
    )
    assert (await world.client.read_channel(old.address)).fees == fee(DGPU)
    assert (await world.client.read_channel(new.address)).fees == fee(DGPU, 1_000)


async def test_program_id_and_payer_costs(world: World) -> None:
    channel = await world.open()
    assert (await world.chain.get_account(channel.address)) is not None
    account = await world.chain.get_account(channel.address)
    assert account is not None and account.owner == PROGRAM_ID
    before = await world.chain.get_balance(world.admin.pubkey())
    await world.client.settle_batch(world.admin, [world.receipt(channel, DGPU)])
    # the submitter pays the transaction and the precompile signature, nothing else
    assert before - await world.chain.get_balance(world.admin.pubkey()) < SOL // 1000


def test_client_works_under_asyncio() -> None:
    """The coordinator runs on asyncio: the same client and chain, another event loop."""

    async def scenario() -> int:
        world = await make_world()
        channel = await world.open(5 * DGPU)
        await world.client.settle_batch(world.admin, [world.receipt(channel, DGPU)])
        return (await world.client.read_channel(channel.address)).settled

    assert anyio.run(scenario, backend="asyncio") == DGPU
