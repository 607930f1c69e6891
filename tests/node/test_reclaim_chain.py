"""The renter's reclaim against the real escrow program in LiteSVM: one channel whose
refund the chain refuses must not keep the renter's other expired channels locked."""

from __future__ import annotations

from pathlib import Path

import spl.token.instructions as spl
from dgpu.contracts_client.chain import LiteSVMChain
from dgpu.contracts_client.chain.interface import send_instructions
from dgpu.contracts_client.instructions import DEFAULT_DISPUTE_WINDOW
from dgpu.contracts_client.money import ChainEscrow, OpenedChannel
from dgpu.node.renter import reclaim_channels
from dgpu.node.store import ChannelRecord, NodeStore
from spl.token.constants import TOKEN_PROGRAM_ID

from tests.coordinator.escrow_world import DGPU, make_world


def _record(opened: OpenedChannel, provider: bytes, mint: bytes, job: bytes) -> ChannelRecord:
    return ChannelRecord(
        channel=opened.address,
        job_id=job,
        provider=provider,
        mint=mint,
        deposit=opened.deposit,
        open_nonce=opened.open_nonce,
        expires_at=opened.expiry + DEFAULT_DISPUTE_WINDOW,
        open_signature=opened.signature,
        status="open",
        reclaim_signature="",
        reclaimed=0,
        updated_at=0,
    )


async def test_a_refund_the_chain_refuses_does_not_block_the_other_channels(
    tmp_path: Path,
) -> None:
    chain = LiteSVMChain()
    world = await make_world(chain, providers=1, renters=2, label="reclaim")
    provider = world.providers[0].public_key
    mint = bytes(world.mint.address)
    renter, other = world.renters
    escrow = ChainEscrow(world.escrow)
    now = await chain.unix_time()
    # A channel (expiring first) whose renter then closed its token account: its refund
    # has nowhere to go and the program refuses it.
    stuck = await escrow.open_channel(
        other, provider=provider, mint=mint, deposit=await world.balance(other), expiry=now + 100
    )
    other_account = world.token_account(other)
    close = spl.close_account(
        spl.CloseAccountParams(
            program_id=TOKEN_PROGRAM_ID,
            account=other_account,
            dest=other.to_solders().pubkey(),
            owner=other.to_solders().pubkey(),
        )
    )
    await send_instructions(chain, [close], other.to_solders(), [other.to_solders()])
    assert await chain.get_account(other_account) is None
    mine = await escrow.open_channel(
        renter, provider=provider, mint=mint, deposit=DGPU, expiry=now + 200
    )
    before = await world.balance(renter)
    with NodeStore.open(tmp_path / "renter.sqlite") as store:
        store.save_channel(_record(stuck, provider, mint, b"\x01" * 16))
        store.save_channel(_record(mine, provider, mint, b"\x02" * 16))
        chain.warp(200 + DEFAULT_DISPUTE_WINDOW + 1)
        results = await reclaim_channels(store, escrow, renter, now=lambda: now)
        by_channel = {r.channel: r for r in results}
        assert by_channel[stuck.address].status == "failed"
        assert "BadTokenAccount" in by_channel[stuck.address].error
        assert by_channel[mine.address].status == "reclaimed"
        assert by_channel[mine.address].amount == DGPU
        assert await world.balance(renter) == before + DGPU
        # The refused channel stays open in the store, to be tried again.
        assert [c.channel for c in store.channels(status="open")] == [stuck.address]
