"""Without a coordinator, a settlement the chain refused is retried, not left for a
restart: otherwise the renter could reclaim the channel before the provider is paid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from dgpu.contracts_client.money import MemoryEscrow
from dgpu.node.provider.node import SETTLE_RETRY_S
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt

from tests.node.rolekit import MINT, job_spec, memory_market

FEE_BPS = 500


class ChainHiccup(DgpuError):
    pass


@dataclass
class FlakySettle:
    """The in-memory escrow whose first ``failures`` settlements fail (an RPC outage)."""

    inner: MemoryEscrow
    failures: int
    failed: int = 0

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Any:
        if self.failed < self.failures:
            self.failed += 1
            raise ChainHiccup("the chain did not answer")
        return await self.inner.settle(payer, receipts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_failed_settlement_is_retried_without_a_coordinator(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path) as m:
        assert isinstance(m.provider.escrow, MemoryEscrow)
        # The outage lasts two attempts: the one when the job ends, and the first retry.
        flaky = FlakySettle(m.provider.escrow, failures=2)
        m.provider.escrow = flaky
        result = await m.renter.run_job(job_spec("echo hi; sleep 5"))
        await m.provider.wait_job(result.job_id)
        assert result.amount_paid > 0
        assert flaky.failed == 1
        assert m.provider_store.unsettled_receipts() != []
        await trio.sleep(SETTLE_RETRY_S + 1)
        assert flaky.failed == 2
        assert m.provider_store.unsettled_receipts() != []
        await trio.sleep(SETTLE_RETRY_S)
        assert m.provider_store.unsettled_receipts() == []
        fee = result.amount_paid * FEE_BPS // 10_000
        assert m.ledger.balance(m.provider_id.public_key, MINT) == result.amount_paid - fee


@dataclass
class UnreadableChannels:
    """The escrow whose channel reads fail (another program's account at that address,
    or the RPC node down)."""

    inner: MemoryEscrow

    async def read_channel(self, channel: bytes) -> Any:
        raise ChainHiccup("account is not a channel")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_channel_that_cannot_be_read_is_refused_and_the_provider_lives_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path) as m:
        real = m.provider.escrow
        assert isinstance(real, MemoryEscrow)
        m.provider.escrow = UnreadableChannels(real)
        with pytest.raises(DgpuError) as refused:
            await m.renter.run_job(job_spec("echo never"))
        assert "not_funded" in str(refused.value) or "cannot read a channel" in str(refused.value)
        assert m.executor.history == []  # nothing ran unfunded
        m.provider.escrow = real
        done = await m.renter.run_job(job_spec("echo hi; sleep 2"))
        assert done.state == "succeeded"
