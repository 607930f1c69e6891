"""A provider with a coordinator still gets paid when the coordinator is down or censors
it: a receipt the chain has not paid ``self_settle_after_s`` after its job ended (or that
the renter could soon reclaim) the provider settles itself. On the in-memory network and
escrow, in virtual time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from dgpu.contracts_client.money import ChannelState, MemoryEscrow, MemoryLedger
from dgpu.node.provider.node import SETTLE_RETRY_S
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer, Receipt

from tests.node.rolekit import MINT, RENTER_FUNDS, MemoryMarket, job_spec, memory_market

AFTER_S = 600
FEE_BPS = 500


class CoordinatorDown(DgpuError):
    pass


@dataclass
class StandInCoordinator:
    """The coordinator as a provider uses it: ``up`` settles each receipt it gets at once,
    ``down`` fails every call, ``censor`` takes receipts and never settles them."""

    mode: str
    escrow: MemoryEscrow
    identity: Identity = field(default_factory=lambda: Identity.from_label("stand-in"))
    received: list[Receipt] = field(default_factory=list)

    async def _answer(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.mode == "down":
            raise CoordinatorDown("the coordinator is down")

    async def post_offer(self, offer: Offer) -> None:
        await self._answer()

    async def post_receipt(self, receipt: Receipt) -> None:
        await self._answer()
        self.received.append(receipt)
        if self.mode == "up":
            await self.escrow.settle(self.identity, [receipt])

    async def post_receipts(self, receipts: Sequence[Receipt]) -> list[dict[str, Any]]:
        for receipt in receipts:
            await self.post_receipt(receipt)
        return [{"status": "accepted"} for _ in receipts]


@dataclass
class Desks:
    """Makes the market's coordinator and keeps it at hand."""

    mode: str
    made: list[StandInCoordinator] = field(default_factory=list)

    def __call__(self, ledger: MemoryLedger) -> StandInCoordinator:
        self.made.append(StandInCoordinator(self.mode, MemoryEscrow(ledger)))
        return self.made[-1]


async def until(m: MemoryMarket, unix: int) -> None:
    """Let virtual time run to Unix second ``unix``."""
    await trio.sleep(unix - m.hub.now())


def channel(m: MemoryMarket, address: bytes) -> ChannelState:
    state = m.ledger.state(address)
    assert state is not None
    return state


async def one_job(m: MemoryMarket) -> tuple[bytes, int, int]:
    """Run a 5-second job; its channel, what the renter paid, when the job ended."""
    result = await m.renter.run_job(job_spec("sleep 5"))
    outcome = await m.provider.wait_job(result.job_id)
    assert result.state == "succeeded" and outcome.paid == result.amount_paid > 0
    job = m.provider_store.get_job(result.job_id, "provider")
    assert job is not None and job.ended_at is not None
    assert result.channel is not None
    return result.channel, result.amount_paid, job.ended_at


def changes(after_s: int) -> dict[str, object]:
    return {"self_settle_after_s": after_s}


@pytest.mark.parametrize("mode", ["down", "censor"])
async def test_receipts_the_coordinator_leaves_unpaid_are_settled_by_the_provider(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, mode: str
) -> None:
    desks = Desks(mode)
    async with memory_market(tmp_path, desk=desks, provider_changes=changes(AFTER_S)) as m:
        address, paid, ended = await one_job(m)
        await until(m, ended + AFTER_S - 1)
        assert channel(m, address).settled == 0
        assert len(m.provider_store.unsettled_receipts()) == 1
        # The first hand-over round past the deadline settles it (rounds every minute).
        await until(m, ended + AFTER_S + SETTLE_RETRY_S)
        state = channel(m, address)
        assert state.settled == paid
        fee = paid * FEE_BPS // 10_000
        assert m.ledger.balance(m.provider_id.public_key, MINT) == paid - fee
        record = m.provider_store.settlement(address, state.open_nonce)
        assert record is not None and (record.status, record.via) == ("settled", "self")
        assert m.provider_store.unsettled_receipts() == []
        (desk,) = desks.made
        handed = [r.cumulative for r in desk.received]
        assert handed == ([] if mode == "down" else [paid])


async def test_a_receipt_is_settled_before_the_renter_can_reclaim_its_channel(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Even with a deadline past the channel's reclaim time, the provider settles while
    it still can: once the reclaim time is two hand-over rounds away."""
    long_after = 30 * 24 * 3600
    async with memory_market(
        tmp_path, desk=Desks("censor"), provider_changes=changes(long_after)
    ) as m:
        address, paid, _ = await one_job(m)
        deposit, reclaimable_at = channel(m, address).deposit, channel(m, address).reclaimable_at
        await until(m, reclaimable_at - 2 * SETTLE_RETRY_S - 1)
        assert channel(m, address).settled == 0
        await until(m, reclaimable_at - SETTLE_RETRY_S)
        assert channel(m, address).settled == paid
        await until(m, reclaimable_at)
        (reclaimed,) = await m.renter.reclaim()
        assert reclaimed.status == "reclaimed" and reclaimed.amount == deposit - paid
        assert m.ledger.balance(m.renter_id.public_key, MINT) == RENTER_FUNDS - paid
        assert m.ledger.balance(m.ledger.treasury, MINT) == paid * FEE_BPS // 10_000


async def test_a_working_coordinator_is_left_to_settle(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    desks = Desks("up")
    async with memory_market(tmp_path, desk=desks, provider_changes=changes(AFTER_S)) as m:
        address, paid, ended = await one_job(m)
        assert channel(m, address).settled == paid
        transactions = m.ledger.transactions
        await until(m, ended + AFTER_S + 2 * SETTLE_RETRY_S)
        # The provider saw the chain paid it and submitted nothing itself.
        assert m.ledger.transactions == transactions
        record = m.provider_store.settlement(address, channel(m, address).open_nonce)
        assert record is not None and record.status == "settled" and record.via != "self"
        assert m.provider_store.unsettled_receipts() == []


async def test_zero_leaves_settlement_to_the_coordinator(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path, desk=Desks("down"), provider_changes=changes(0)) as m:
        address, _, _ = await one_job(m)
        await until(m, channel(m, address).reclaimable_at + SETTLE_RETRY_S)
        assert channel(m, address).settled == 0
        assert len(m.provider_store.unsettled_receipts()) == 1
