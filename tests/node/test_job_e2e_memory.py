"""Provider and renter end to end on the in-memory network and escrow, in virtual time.

The same classes as the real-parts tests (tests/node/test_job_e2e_docker.py), driven by
trio's MockClock: a day-long job costs nothing, and every time below is exact.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from dgpu.node.config import ProviderFaults, RenterFaults
from dgpu.node.net import NEGOTIATE_PROTOCOL, PeerRef
from dgpu.node.renter import JobRefused, LogReceived, NoMatchingOffer, ReceiptSigned, RenterEvent
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Cancel, ErrorMessage

from tests.node.rolekit import IMAGE, MINT, PRICE, RENTER_FUNDS, job_spec, memory_market

if TYPE_CHECKING:
    from trio_typing import TaskStatus

FEE_BPS = 500


async def test_a_job_runs_is_paid_per_second_and_the_rest_reclaimed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    events: list[RenterEvent] = []
    async with memory_market(tmp_path) as m:
        spec = job_spec(
            "echo hello; sleep 5; echo done >&2; echo 42 > /out/answer.txt",
            output_dir="/out",
            max_output_bytes=1024,
        )
        got = tmp_path / "got"
        result = await m.renter.run_job(spec, events=events.append, output_dir=got)
        outcome = await m.provider.wait_job(result.job_id)
        assert result.state == "succeeded" and result.exit_code == 0
        # The output came over the network and matches the signed manifest.
        (output,) = result.outputs
        assert output.path == "answer.txt" and output.local == got / "answer.txt"
        assert (got / "answer.txt").read_bytes() == b"42\n"
        assert output.sha256 == hashlib.sha256(b"42\n").hexdigest()
        assert result.ok and result.disputes == []
        logs = b"".join(e.data for e in events if isinstance(e, LogReceived))
        assert b"hello\n" in logs and b"done\n" in logs
        # Receipts add up to price x billed seconds, and both sides agree.
        assert result.seconds_billed == 5
        assert result.amount_paid == PRICE * result.seconds_billed
        assert outcome.paid == result.amount_paid
        assert result.acknowledged == result.amount_paid
        signed = [e.cumulative for e in events if isinstance(e, ReceiptSigned)]
        assert signed == sorted(signed) and signed[-1] == result.amount_paid
        # Settled on finish (no coordinator): the provider got the amount minus the fee;
        # the fee stays in the channel's vault until the channel closes.
        fee = result.amount_paid * FEE_BPS // 10_000
        assert m.ledger.balance(m.provider_id.public_key, MINT) == result.amount_paid - fee
        assert m.ledger.balance(m.ledger.treasury, MINT) == 0
        assert m.provider_store.unsettled_receipts() == []
        # The container is gone and the GPUs are free again.
        assert [run.removed for run in m.executor.history] == [True]
        assert m.provider.status().free == {"RTX 4090": 2}
        # Reclaim: not yet before expiry + dispute window, then the rest comes back.
        (early,) = await m.renter.reclaim()
        assert early.status == "not_yet"
        await trio.sleep(early.reclaimable_at - m.hub.now())
        (late,) = await m.renter.reclaim()
        assert late.status == "reclaimed"
        assert late.amount == result.deposit - result.amount_paid
        assert m.ledger.balance(m.renter_id.public_key, MINT) == RENTER_FUNDS - result.amount_paid
        assert m.ledger.balance(m.ledger.treasury, MINT) == fee
        assert m.ledger.channels == {}


async def test_renter_that_stops_signing_is_cut_off_within_the_grace_period(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path, renter_faults=RenterFaults(stop_signing_after=3)) as m:
        result = await m.renter.run_job(job_spec("echo start; sleep 500"))
        outcome = await m.provider.wait_job(result.job_id)
        assert outcome.stop_reason == "non_payment"
        assert result.state == "stopped"
        # Paid exactly what was signed: 3 receipts of one second each.
        assert outcome.paid == result.amount_paid == 3 * PRICE
        quote_interval, quote_grace = 1, 2
        run = m.executor.history[0]
        assert run.removed and run.exit is not None and run.exit.reason == "stopped"
        # Stopped once the unpaid time exceeded interval + grace (checked every interval).
        assert outcome.seconds_billed == 3
        job = m.provider_store.get_job(result.job_id, "provider")
        assert job is not None and job.started_at is not None and job.ended_at is not None
        assert job.ended_at - job.started_at <= 3 + quote_interval + quote_grace + 1
        fee = outcome.paid * FEE_BPS // 10_000
        assert m.ledger.balance(m.provider_id.public_key, MINT) == outcome.paid - fee


async def test_over_reporting_provider_is_refused_and_paid_no_more_than_allowed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path, provider_faults=ProviderFaults(over_report_s=30)) as m:
        result = await m.renter.run_job(job_spec("sleep 100"))
        assert result.disputes and "refused report" in result.disputes[0]
        assert result.amount_paid == 0  # the very first report claimed 31 s after 1 s
        outcome = await m.provider.wait_job(result.job_id)
        assert outcome.state == "stopped" and outcome.stop_reason == "renter_error"
        assert "over_limit" in outcome.detail and outcome.paid == 0
        assert m.ledger.balance(m.provider_id.public_key, MINT) == 0


async def test_hostile_requests_are_refused_with_a_clear_error(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path) as m:
        offer = m.provider.offer
        assert offer is not None
        with pytest.raises(JobRefused, match="image_not_allowed") as refused:
            await m.renter.run_job(job_spec("true", image="evil/miner:latest"), offers=[offer])
        assert "evil/miner:latest" in refused.value.reason
        with pytest.raises(JobRefused, match="duration_too_long"):
            await m.renter.run_job(job_spec("true", max_duration_s=30 * 24 * 3600), offers=[offer])
        with pytest.raises(JobRefused, match="price_too_low"):
            await m.renter.run_job(job_spec("true", max_price_per_gpu_second=1), offers=[offer])
        with pytest.raises(JobRefused, match="no_capacity"):
            await m.renter.run_job(job_spec("true", gpu_count=3), offers=[offer])
        # A malformed request (a message of the wrong kind) gets a typed refusal back.
        wrong = Cancel(job_id=bytes(16), reason="not a job request")
        reply = await m.renter.network.request(PeerRef.from_offer(offer), NEGOTIATE_PROTOCOL, wrong)
        assert isinstance(reply, ErrorMessage) and reply.code == "bad_request"
        assert "malformed job request" in reply.message
        # Nothing ran, no GPU stays reserved, nothing was paid.
        assert m.executor.history == []
        assert m.provider.status().free == {"RTX 4090": 2}
        assert m.ledger.channels == {}
        # And the provider still serves a good job afterwards.
        result = await m.renter.run_job(job_spec("echo ok"), offers=[offer])
        assert result.state == "succeeded"


async def test_no_matching_offer_says_which_filter_excluded_them(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path) as m:
        with pytest.raises(NoMatchingOffer, match="price") as none:
            await m.renter.run_job(job_spec("true", max_price_per_gpu_second=PRICE - 1))
        assert none.value.reasons == {"price": 1}
        assert IMAGE  # the offer itself is fine for another renter
        found = await m.renter.find_offers(m.renter.query_for(job_spec("true")))
        assert [o.provider for o in found.offers] == [m.provider_id.public_key]


async def test_renter_cancels_and_pays_for_the_time_used(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with memory_market(tmp_path) as m:
        cancel = trio.Event()

        def on_event(event: RenterEvent) -> None:
            if isinstance(event, ReceiptSigned) and event.elapsed_s >= 4:
                cancel.set()

        result = await m.renter.run_job(job_spec("sleep 1000"), events=on_event, cancel=cancel)
        assert result.state == "cancelled"
        assert 4 <= result.seconds_billed <= 6
        assert result.amount_paid == PRICE * result.seconds_billed
        outcome = await m.provider.wait_job(result.job_id)
        assert outcome.paid == result.amount_paid


async def test_provider_crash_and_restart_loses_no_acknowledged_receipt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The provider's peer crashes mid-job (its whole task tree is cancelled, as a kill
    would); a new Provider on the same store recovers: closes the job, sweeps containers,
    settles every receipt it had acknowledged."""
    from dgpu.contracts_client.money import MemoryEscrow
    from dgpu.node.gpu import SimulatedBackend, parse_gpu_spec
    from dgpu.node.net import open_memory_network
    from dgpu.node.provider import Provider, VirtualExecutor
    from dgpu.node.store import NodeStore

    from tests.node.rolekit import provider_config

    async with memory_market(tmp_path) as m:
        store_path = tmp_path / "crashing-provider.sqlite"
        identity = Identity.from_label("crashing-provider")
        executor = VirtualExecutor()

        async def provider_life(*, task_status: TaskStatus[Provider]) -> None:
            with NodeStore.open(store_path) as store:
                async with open_memory_network(m.hub, identity) as net:
                    provider = Provider(
                        identity=identity,
                        config=provider_config(m.ledger),
                        network=net,
                        escrow=MemoryEscrow(m.ledger),
                        executor=executor,
                        gpu_backend=SimulatedBackend(parse_gpu_spec("1xRTX 4090")),
                        store=store,
                    )
                    await provider.run(task_status=task_status)

        first = await m.nursery.start(provider_life)
        assert first.offer is not None

        def on_event(event: RenterEvent) -> None:
            if isinstance(event, ReceiptSigned) and event.elapsed_s >= 6:
                m.hub.crash(identity.peer_id)

        result = await m.renter.run_job(
            job_spec("sleep 1000"), offers=[first.offer], events=on_event
        )
        assert result.state == "aborted"
        assert result.acknowledged >= 5 * PRICE
        assert m.ledger.channels[result.channel].state.settled == 0
        second = await m.nursery.start(provider_life)
        # Recovery settled what was acknowledged (and maybe one more receipt).
        state = m.ledger.channels[result.channel].state
        assert result.acknowledged <= state.settled <= result.amount_paid
        assert executor.sweeps == [identity.address, identity.address]
        job = second.store.get_job(result.job_id, "provider")
        assert job is not None and job.state == "stopped"
        assert job.stop_reason == "provider_restart"
        assert second.store.unsettled_receipts() == []
