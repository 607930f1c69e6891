"""Money-path regressions on the in-memory network and escrow (virtual time): hostile or
broken counterparties must never crash a node, lose a receipt or misreport an amount."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.testing
from dgpu.contracts_client.money import (
    DEFAULT_BOUNDS,
    ChannelBounds,
    ChannelState,
    MemoryEscrow,
    MemoryLedger,
    OpenedChannel,
    PaymentError,
)
from dgpu.node.net import METERING_PROTOCOL, NEGOTIATE_PROTOCOL, open_memory_network
from dgpu.node.net.framing import FramedStream, encode_frame
from dgpu.node.net.interface import MessageStream
from dgpu.node.net.memory.network import MemoryNetwork
from dgpu.node.renter import Renter
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import (
    Agreement,
    ChannelOpened,
    JobRequest,
    JobStatus,
    Offer,
    OutputFile,
    OutputManifest,
)
from dgpu.protocol.negotiation import ProviderNegotiation, ProviderPolicy
from dgpu.protocol.offers import OfferTerms, make_offer
from dgpu.protocol.signing import sign

from tests.node.rolekit import MINT, PRICE, job_spec, memory_market

Handler = Callable[[MessageStream, str], Awaitable[None]]


def _serve_hostile(
    net: MemoryNetwork, hostile: Identity, program_id: bytes, metering: Handler
) -> Offer:
    """Serve an honest negotiation and ``metering`` as ``hostile``; return its offer."""
    policy = ProviderPolicy(
        price_per_gpu_second=PRICE,
        gpu_model="RTX 4090",
        free_gpus=1,
        mint=MINT,
        program_id=program_id,
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
    return make_offer(hostile, terms, multiaddrs=net.listen_addrs[:1], now=net.now(), ttl_s=120)


async def test_renter_survives_an_undecodable_message_from_the_provider(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A provider that sends one frame of garbage mid-job: the renter ignores it (as the
    provider ignores a renter's), sees the job to its end and returns a result."""
    async with memory_market(tmp_path) as m:
        hostile = Identity.from_label("garbling-provider")
        async with open_memory_network(m.hub, hostile) as net:

            async def metering(stream: MessageStream, peer: str) -> None:
                opened = await stream.receive_as(ChannelOpened)
                await stream.send(JobStatus(job_id=opened.job_id, state="running"))
                assert isinstance(stream, FramedStream)
                await stream._stream.send_all(encode_frame(b"\xc1 not a message"))
                await stream.send(JobStatus(job_id=opened.job_id, state="failed", exit_code=3))

            offer = _serve_hostile(net, hostile, m.ledger.program_id, metering)
            result = await m.renter.run_job(job_spec("true"), offers=[offer])
        assert result.state == "failed" and result.exit_code == 3
        assert result.amount_paid == 0
        stored = m.renter.store.get_job(result.job_id, "renter")
        assert stored is not None and stored.state == "failed"


async def test_an_output_the_renter_cannot_take_is_a_dispute_not_a_lost_result(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A signed manifest naming a path outside the output folder (and nothing to fetch):
    the renter still gets its result, with the money fields, and the job is final in its
    store; the bad output is reported as a dispute."""
    async with memory_market(tmp_path) as m:
        hostile = Identity.from_label("escaping-provider")
        async with open_memory_network(m.hub, hostile) as net:

            async def metering(stream: MessageStream, peer: str) -> None:
                opened = await stream.receive_as(ChannelOpened)
                await stream.send(JobStatus(job_id=opened.job_id, state="running"))
                files = [OutputFile(path="../escape.txt", sha256=bytes(32), size=1)]
                manifest = OutputManifest(job_id=opened.job_id, files=files)
                await stream.send(sign(manifest, hostile))
                await stream.send(JobStatus(job_id=opened.job_id, state="succeeded", exit_code=0))

            offer = _serve_hostile(net, hostile, m.ledger.program_id, metering)
            result = await m.renter.run_job(
                job_spec("true"), offers=[offer], output_dir=tmp_path / "got"
            )
        assert result.state == "succeeded" and not result.ok
        assert len(result.disputes) == 1 and "escape.txt" in result.disputes[0]
        assert [o.local for o in result.outputs] == [None]
        assert not (tmp_path / "escape.txt").exists()
        stored = m.renter.store.get_job(result.job_id, "renter")
        assert stored is not None and stored.state == "succeeded"


class ReadFailsOnceAfterOpen(MemoryEscrow):
    """The memory escrow, whose first read after an opening fails (an RPC node that
    errs right after confirming the open transaction)."""

    def __init__(self, ledger: MemoryLedger) -> None:
        super().__init__(ledger)
        self.fail_next_read = False

    async def open_channel(
        self,
        renter: Identity,
        *,
        provider: bytes,
        mint: bytes,
        deposit: int,
        expiry: int,
        bounds: ChannelBounds = DEFAULT_BOUNDS,
    ) -> OpenedChannel:
        opened = await super().open_channel(
            renter, provider=provider, mint=mint, deposit=deposit, expiry=expiry, bounds=bounds
        )
        self.fail_next_read = True
        return opened

    async def read_channel(self, channel: bytes) -> ChannelState | None:
        if self.fail_next_read:
            self.fail_next_read = False
            raise PaymentError("the chain could not be read just now")
        return await super().read_channel(channel)


async def test_a_channel_opened_on_chain_is_stored_even_if_reading_it_back_fails(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Once the deposit is on chain, the renter must keep the channel (or it can never
    reclaim it): a failed read-back falls back to the expiry it chose."""
    async with memory_market(tmp_path) as m:
        renter = Renter(
            identity=m.renter_id,
            config=m.renter.config,
            network=m.renter.network,
            escrow=ReadFailsOnceAfterOpen(m.ledger),
            store=m.renter.store,
        )
        assert m.provider.offer is not None
        result = await renter.run_job(job_spec("sleep 3"), offers=[m.provider.offer])
        assert result.state == "succeeded" and result.amount_paid == 3 * PRICE
        record = m.renter.store.channel_of_job(result.job_id)
        assert record is not None and record.channel == result.channel
        assert result.reclaimable_at == record.expires_at > 0
