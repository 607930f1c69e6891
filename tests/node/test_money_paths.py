"""Money-path regressions on the in-memory network and escrow (virtual time): hostile or
broken counterparties must never crash a node, lose a receipt or misreport an amount."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from dgpu.node.net import METERING_PROTOCOL, NEGOTIATE_PROTOCOL, open_memory_network
from dgpu.node.net.framing import FramedStream, encode_frame
from dgpu.node.net.interface import MessageStream
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Agreement, ChannelOpened, JobRequest, JobStatus
from dgpu.protocol.negotiation import ProviderNegotiation, ProviderPolicy
from dgpu.protocol.offers import OfferTerms, make_offer

from tests.node.rolekit import MINT, PRICE, job_spec, memory_market


async def test_renter_survives_an_undecodable_message_from_the_provider(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A provider that sends one frame of garbage mid-job: the renter ignores it (as the
    provider ignores a renter's), sees the job to its end and returns a result."""
    async with memory_market(tmp_path) as m:
        hostile = Identity.from_label("garbling-provider")
        async with open_memory_network(m.hub, hostile) as net:
            policy = ProviderPolicy(
                price_per_gpu_second=PRICE,
                gpu_model="RTX 4090",
                free_gpus=1,
                mint=MINT,
                program_id=m.ledger.program_id,
                max_duration_s=3600,
                interval_s=1,
                grace_s=2,
            )

            async def negotiate(stream: MessageStream, peer: str) -> None:
                request = await stream.receive_as(JobRequest)
                negotiation = ProviderNegotiation(hostile)
                await stream.send(negotiation.on_request(request, policy, now=net.now()))
                agreement = await stream.receive_as(Agreement)
                await stream.send(negotiation.on_agreement(agreement, now=net.now()))

            async def metering(stream: MessageStream, peer: str) -> None:
                opened = await stream.receive_as(ChannelOpened)
                await stream.send(JobStatus(job_id=opened.job_id, state="running"))
                assert isinstance(stream, FramedStream)
                await stream._stream.send_all(encode_frame(b"\xc1 not a message"))
                await stream.send(JobStatus(job_id=opened.job_id, state="failed", exit_code=3))

            net.serve(NEGOTIATE_PROTOCOL, negotiate)
            net.serve(METERING_PROTOCOL, metering)
            terms = OfferTerms(
                gpu_model="RTX 4090",
                gpu_count=1,
                vram_mb=24_000,
                price_per_gpu_second=PRICE,
                mint=MINT,
                region="",
                max_duration_s=3600,
                simulated=True,
            )
            offer = make_offer(
                hostile, terms, multiaddrs=net.listen_addrs[:1], now=net.now(), ttl_s=120
            )
            result = await m.renter.run_job(job_spec("true"), offers=[offer])
        assert result.state == "failed" and result.exit_code == 3
        assert result.amount_paid == 0
        stored = m.renter.store.get_job(result.job_id, "renter")
        assert stored is not None and stored.state == "failed"
