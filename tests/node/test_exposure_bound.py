"""Attack 7 of issue 12: the provider's unpaid work at a non-payment stop is at most
interval + grace (the README's bound), at the boundary, in virtual time."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from dgpu.node.config import RenterFaults

from tests.node.rolekit import PRICE, job_spec, memory_market


@pytest.mark.parametrize(("interval", "grace"), [(5, 3), (1, 2), (4, 1)])
async def test_unpaid_work_at_a_non_payment_stop_is_exactly_interval_plus_grace(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, interval: int, grace: int
) -> None:
    async with memory_market(
        tmp_path,
        renter_faults=RenterFaults(stop_signing_after=2),
        provider_changes={"interval_s": interval, "grace_s": grace},
    ) as m:
        result = await m.renter.run_job(job_spec("sleep 1000"))
        outcome = await m.provider.wait_job(result.job_id)
        assert outcome.stop_reason == "non_payment"
        paid_seconds = outcome.paid // PRICE
        assert paid_seconds == 2 * interval  # two receipts, one per interval
        job = m.provider_store.get_job(result.job_id, "provider")
        assert job is not None and job.started_at is not None and job.ended_at is not None
        unpaid_at_stop = job.ended_at - job.started_at - paid_seconds
        assert unpaid_at_stop == interval + grace
