"""The renter side of a simulated job, driven through the protocol's state machines.

INTERIM: ``dgpu.node.renter`` (the renter role of the node) is not written yet. Until it
is, this drives the renter's half of the real protocol itself, in the shape the role will
have: :class:`~dgpu.protocol.negotiation.RenterNegotiation` over the provider's
``/dgpu/negotiate/1.0.0`` stream, a channel opened through the node's
:class:`~dgpu.node.payments.escrow.Escrow`, then
:class:`~dgpu.protocol.metering.RenterMeter` on the ``/dgpu/metering/1.0.0`` stream (each
UsageReport checked against the renter's own clock, each receipt stored before it is
sent). The provider on the other end is the real :class:`dgpu.node.provider.Provider`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from dgpu.node.net.errors import NetError
from dgpu.node.net.interface import METERING_PROTOCOL, NEGOTIATE_PROTOCOL, Network, PeerRef
from dgpu.node.payments.escrow import Escrow, PaymentError
from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import (
    Agreement,
    ErrorMessage,
    JobStatus,
    Offer,
    Quote,
    Receipt,
    UsageReport,
)
from dgpu.protocol.metering import ChannelRef, RenterMeter
from dgpu.protocol.negotiation import JobSpec, RenterNegotiation

log = logging.getLogger(__name__)

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "stopped"})
NEGOTIATE_TIMEOUT_S = 30.0
CHANNEL_MARGIN_S = 120
TOLERANCE_S = 2


@dataclass
class RenterBook:
    """What a renter keeps across restarts (its disk): channels to reclaim, receipts."""

    channels: dict[bytes, int] = field(default_factory=dict)
    """Channel -> Unix time from which it can be reclaimed."""
    signed: dict[bytes, int] = field(default_factory=dict)
    """Channel -> highest cumulative the renter signed for it."""
    reclaimed: dict[bytes, int] = field(default_factory=dict)
    refused_reports: int = 0


@dataclass
class JobOutcome:
    job_id: bytes
    provider: bytes
    state: str
    """succeeded / failed / stopped / cancelled, or ``unmatched`` / ``refused`` /
    ``broken`` (the stream to the provider broke before a final status)."""
    price_per_gpu_second: int = 0
    gpu_count: int = 0
    channel: bytes = b""
    signed: int = 0


@dataclass
class RenterDriver:
    identity: Identity
    network: Network
    escrow: Escrow
    mint: bytes
    book: RenterBook
    clock: Callable[[], int]
    stop_signing_after: int | None = None
    """Fault: sign this many receipts per job, then no more (keep listening)."""

    async def run_job(self, offers: list[Offer], spec: JobSpec, job_id: bytes) -> JobOutcome:
        """Try ``offers`` in order until one takes the job; run it to its end."""
        for offer in offers:
            negotiation = RenterNegotiation(self.identity, offer, spec)
            quote = await self._negotiate(negotiation, job_id)
            if quote is not None:
                return await self._fund_and_meter(negotiation, quote)
        return JobOutcome(job_id, b"", "unmatched")

    async def _negotiate(self, negotiation: RenterNegotiation, job_id: bytes) -> Quote | None:
        peer = PeerRef.from_offer(negotiation.offer)
        try:
            with trio.fail_after(NEGOTIATE_TIMEOUT_S):
                async with self.network.open_stream(peer, NEGOTIATE_PROTOCOL) as stream:
                    await stream.send(negotiation.make_request(now=self.clock(), job_id=job_id))
                    reply = await stream.receive()
                    if not isinstance(reply, Quote):
                        log.info("offer refused: %s", reply)
                        return None
                    agreement = negotiation.on_quote(
                        reply, now=self.clock(), program_id=self.escrow.program_id
                    )
                    await stream.send(agreement)
                    countersigned = await stream.receive_as(Agreement)
                    negotiation.on_countersigned(countersigned)
                    return reply
        except (NetError, ProtocolError, trio.TooSlowError) as exc:
            log.info("negotiation with %s failed: %s", peer.peer_id, exc)
            return None

    async def _fund_and_meter(self, negotiation: RenterNegotiation, quote: Quote) -> JobOutcome:
        outcome = JobOutcome(
            quote.job_id, quote.provider, "broken", quote.price_per_gpu_second, quote.gpu_count
        )
        expiry = self.clock() + quote.max_duration_s + CHANNEL_MARGIN_S
        try:
            opened = await self.escrow.open_channel(
                self.identity,
                provider=quote.provider,
                mint=quote.mint,
                deposit=quote.deposit,
                expiry=expiry,
            )
        except PaymentError as exc:
            log.info("job %s: channel not opened: %s", quote.job_id.hex(), exc)
            outcome.state = "unfunded"
            return outcome
        state = await self.escrow.read_channel(opened.address)
        window = state.dispute_window if state is not None else 0
        self.book.channels[opened.address] = opened.expiry + window
        outcome.channel = opened.address
        channel = ChannelRef(
            self.escrow.program_id, opened.address, opened.open_nonce, opened.deposit
        )
        announce = negotiation.channel_opened(
            channel=opened.address,
            open_nonce=opened.open_nonce,
            expires_at=opened.expiry,
            signature=opened.signature,
        )
        silence = quote.interval_s + quote.grace_s + 30
        peer = PeerRef.from_offer(negotiation.offer)
        try:
            async with self.network.open_stream(peer, METERING_PROTOCOL) as stream:
                await stream.send(announce)
                meter: RenterMeter | None = None
                receipts = 0
                while True:
                    message = await stream.receive(timeout=silence)
                    if isinstance(message, JobStatus):
                        if message.state == "running" and meter is None:
                            meter = RenterMeter(
                                self.identity, quote, channel, self.clock(), tolerance_s=TOLERANCE_S
                            )
                        if message.state in FINAL_STATES:
                            outcome.state = message.state
                            break
                    elif isinstance(message, UsageReport) and meter is not None:
                        if self.stop_signing_after is not None and (
                            receipts >= self.stop_signing_after
                        ):
                            continue
                        receipt = self._receipt_for(meter, message)
                        if receipt is not None:
                            receipts += 1
                            await stream.send(receipt)
                    elif isinstance(message, ErrorMessage):
                        outcome.state = "refused"
                        break
        except (NetError, ProtocolError) as exc:
            log.info("job %s: stream to the provider ended: %s", quote.job_id.hex(), exc)
        outcome.signed = self.book.signed.get(opened.address, 0)
        return outcome

    def _receipt_for(self, meter: RenterMeter, report: UsageReport) -> Receipt | None:
        try:
            receipt = meter.on_report(report, now=self.clock())
        except ProtocolError as exc:
            self.book.refused_reports += 1
            log.info("report refused: %s", exc)
            return None
        if receipt is not None:
            # Kept (the renter's disk) before it is sent.
            self.book.signed[receipt.channel] = max(
                receipt.cumulative, self.book.signed.get(receipt.channel, 0)
            )
        return receipt

    @staticmethod
    def rank(offers: list[Offer], spec: JobSpec, now: int) -> list[Offer]:
        """Offers that fit ``spec``, cheapest first (ties: the provider's key)."""
        fit = [
            o
            for o in offers
            if o.gpu_model == spec.gpu_model
            and o.gpu_count >= spec.gpu_count
            and o.price_per_gpu_second <= spec.max_price_per_gpu_second
            and o.max_duration_s >= spec.max_duration_s
            and o.expires_at > now
        ]
        return sorted(fit, key=lambda o: (o.price_per_gpu_second, o.provider))


async def reclaim(escrow: Escrow, renter: Identity, book: RenterBook) -> None:
    """Refund every channel of ``book`` whose expiry and dispute window have passed."""
    now = await escrow.unix_time()
    for channel, at in list(book.channels.items()):
        if at > now:
            continue
        try:
            refunded = await escrow.refund(renter, channel)
        except PaymentError as exc:
            log.info("refund of %s failed: %s", channel.hex(), exc)
            continue
        book.reclaimed[channel] = refunded.amount
        del book.channels[channel]
