"""A renter bounds the terms of the channel it opens: the config's admin can change the
fee and dispute window at any moment (a change may land just before an opening), so
``open_channel`` carries the largest fee and longest window the renter accepts and is
refused when the config is above either; the channel keeps the terms it opened with."""

from __future__ import annotations

import pytest
from dgpu.contracts_client import ChannelBounds
from dgpu.contracts_client.instructions import open_channel_ix
from solders.pubkey import Pubkey

from tests.contracts.support import (
    DGPU,
    DISPUTE_WINDOW,
    FEE_BPS,
    RENTER_TOKENS,
    World,
    expect_refused,
)


async def _open(world: World, bounds: ChannelBounds, channel_id: int = 1) -> Pubkey:
    ix, channel = open_channel_ix(
        world.renter.pubkey,
        provider=world.provider.pubkey,
        mint=world.mint.address,
        channel_id=channel_id,
        deposit=DGPU,
        expiry=await world.chain.unix_time() + 600,
        bounds=bounds,
    )
    await world.send([ix], world.renter.keypair)
    return channel


@pytest.mark.parametrize(
    ("bounds", "error"),
    [
        (ChannelBounds(FEE_BPS - 1, DISPUTE_WINDOW), "FeeAboveBound"),
        (ChannelBounds(0, DISPUTE_WINDOW), "FeeAboveBound"),
        (ChannelBounds(FEE_BPS, DISPUTE_WINDOW - 1), "DisputeWindowAboveBound"),
        (ChannelBounds(FEE_BPS, 0), "DisputeWindowAboveBound"),
    ],
)
async def test_open_above_the_renters_bounds_is_refused(
    world: World, bounds: ChannelBounds, error: str
) -> None:
    await expect_refused(world, error, _open(world, bounds))
    assert (await world.client.read_config()).channels_opened == 0
    assert await world.chain.get_token_balance(world.renter.token) == RENTER_TOKENS


async def test_open_at_the_bounds_records_the_configs_terms(world: World) -> None:
    opened = await world.client.open_channel(
        world.renter.keypair,
        provider=world.provider.pubkey,
        mint=world.mint.address,
        deposit=DGPU,
        expiry=await world.chain.unix_time() + 600,
        bounds=ChannelBounds(FEE_BPS, DISPUTE_WINDOW),
    )
    assert (opened.state.fee_bps, opened.state.dispute_window) == (FEE_BPS, DISPUTE_WINDOW)


async def test_a_config_change_landing_first_cannot_impose_new_terms(world: World) -> None:
    agreed = ChannelBounds(FEE_BPS, DISPUTE_WINDOW)
    await world.client.update_config(world.admin, fee_bps=10_000)
    await expect_refused(world, "FeeAboveBound", _open(world, agreed))
    await world.client.update_config(world.admin, fee_bps=FEE_BPS, dispute_window=10**8)
    await expect_refused(world, "DisputeWindowAboveBound", _open(world, agreed))
    await world.client.update_config(world.admin, dispute_window=DISPUTE_WINDOW)
    channel = await _open(world, agreed)
    # and once open, the channel keeps its terms whatever the config says next
    await world.client.update_config(world.admin, fee_bps=9_000, dispute_window=10**8)
    state = await world.client.read_channel(channel)
    assert (state.fee_bps, state.dispute_window) == (FEE_BPS, DISPUTE_WINDOW)
