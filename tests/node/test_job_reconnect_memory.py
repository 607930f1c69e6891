"""A metering connection lost mid-job, on the in-memory network in virtual time (the
real-process version across network namespaces is ``tests/hosts/test_reconnect.py``).

The hub partitions renter and provider (their streams are reset) and heals: within
interval + grace the renter redials and attaches a new metering stream to the running
job, metering resumes and the job is paid in full; past it the provider has stopped the
job and is paid exactly what was signed, and the renter's result says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing
from dgpu.node.renter import ReceiptSigned, RenterEvent
from dgpu.node.renter.events import JobResult

from tests.node.rolekit import PRICE, MemoryMarket, job_spec, memory_market


async def _cut_mid_job(
    m: MemoryMarket, script: str, away_s: float
) -> tuple[JobResult, list[RenterEvent]]:
    events: list[RenterEvent] = []
    result: list[JobResult] = []
    signed = trio.Event()

    def sink(event: RenterEvent) -> None:
        events.append(event)
        if sum(isinstance(e, ReceiptSigned) for e in events) >= 3:
            signed.set()

    async def run() -> None:
        result.append(await m.renter.run_job(job_spec(script), events=sink))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await signed.wait()
        await trio.sleep(0.5)  # between two receipts
        m.hub.partition([m.renter_id.peer_id], [m.provider_id.peer_id])
        await trio.sleep(away_s)
        m.hub.heal()
    return result[0], events


async def test_a_cut_healed_within_grace_is_redialled_and_the_job_paid_in_full(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with memory_market(tmp_path, provider_changes={"grace_s": 5}) as m:
        result, _ = await _cut_mid_job(m, "echo start; sleep 10; echo end", away_s=2)
        outcome = await m.provider.wait_job(result.job_id)
    assert result.state == "succeeded", result.detail
    assert "reconnected to the provider" in caplog.text
    assert "the renter is back" in caplog.text
    assert result.seconds_billed == 10
    assert result.amount_paid == PRICE * 10
    assert outcome.paid == result.amount_paid


async def test_a_cut_past_grace_stops_the_job_paid_what_was_signed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path) as m:
        result, events = await _cut_mid_job(m, "echo start; sleep 500", away_s=30)
        outcome = await m.provider.wait_job(result.job_id)
    assert result.state == "aborted"
    assert "redial" in result.detail and "what was signed" in result.detail, result.detail
    assert outcome.stop_reason in ("renter_gone", "non_payment")
    signed = [e.cumulative for e in events if isinstance(e, ReceiptSigned)]
    assert outcome.paid == result.amount_paid == signed[-1]
