"""One job from the renter's side: negotiate, fund the channel, pay as it runs, collect.

Negotiation runs on ``/dgpu/negotiate/1.0.0`` (JobRequest → Quote → Agreement →
countersigned Agreement), then the renter opens and funds the escrow channel, stores it,
and announces it on a new ``/dgpu/metering/1.0.0`` stream (see
:mod:`dgpu.node.provider.session` for the exchange). Each UsageReport is checked by
:class:`~dgpu.protocol.metering.RenterMeter` against the agreement and the renter's own
clock; a receipt is stored before it is sent, and never for more than the agreement
allows for the time that has passed. A report claiming more is refused, the job cancelled
and the refusal recorded in the result.

Nothing is signed for a job the provider already stopped. The provider stops a job when
no receipt covered the work within interval + grace, so a report read more than the grace
period after it was made (this node was frozen, suspended or cut off) is one the provider
has given up on: from then on this job signs nothing (the queued final report included),
and the result says why. A report's age is measured on the provider's own clock (its
``at``) against the smallest offset seen between the two clocks, so clock skew between
the machines does not count.
"""

from __future__ import annotations

import contextlib
import logging
import math
import posixpath
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import trio
from dgpu.contracts_client.money import ChannelBounds, Escrow, OpenedChannel
from dgpu.node.config import RenterConfig
from dgpu.node.net.errors import NetError, NetTimeout
from dgpu.node.net.interface import (
    METERING_PROTOCOL,
    NEGOTIATE_PROTOCOL,
    MessageStream,
    Network,
    PeerRef,
)
from dgpu.node.renter.errors import (
    FundingFailed,
    JobRefused,
    OutputMismatch,
    Outraced,
    ProviderMisbehaved,
)
from dgpu.node.renter.events import (
    Agreed,
    Ended,
    EventSink,
    FetchedOutput,
    Funded,
    JobResult,
    LogReceived,
    OutputFetched,
    ReceiptSigned,
    ReportRefused,
    Started,
)
from dgpu.node.renter.outputs import OutputFetcher
from dgpu.node.store import ChannelRecord, JobRecord, NodeStore
from dgpu.protocol.codec import encode
from dgpu.protocol.errors import DgpuError, ProtocolError, SignatureError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import (
    Agreement,
    AnyMessage,
    Cancel,
    ChannelOpened,
    ErrorMessage,
    JobStatus,
    LogChunk,
    Offer,
    OutputManifest,
    Quote,
    Receipt,
    ReceiptAck,
    UsageReport,
)
from dgpu.protocol.metering import ChannelRef, RenterMeter, RenterRefusal
from dgpu.protocol.negotiation import JobSpec, RenterNegotiation
from dgpu.protocol.signing import sign, verify

log = logging.getLogger(__name__)

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "stopped"})


class AgreementGate(Protocol):
    """Lets one of several concurrent negotiations sign at a time, until one succeeds."""

    def turn(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """Held while this attempt signs; yields False when another already won."""
        ...

    def won(self, job: RenterJob) -> None: ...


@asynccontextmanager
async def _turn(gate: AgreementGate | None) -> AsyncIterator[bool]:
    if gate is None:
        yield True
        return
    async with gate.turn() as go:
        yield go


class _StreamLost(DgpuError):
    """The metering stream broke after it ran (carries why; caught where raised)."""

    def __init__(self, error: NetError) -> None:
        super().__init__(str(error))
        self.error = error


class RenterJob:
    """One job with one provider (see the module docstring)."""

    def __init__(
        self,
        *,
        identity: Identity,
        config: RenterConfig,
        network: Network,
        escrow: Escrow,
        store: NodeStore,
        offer: Offer,
        spec: JobSpec,
        job_id: bytes,
        emit: EventSink,
        cancel: trio.Event,
        fetcher: OutputFetcher | None = None,
        output_dir: Path | None = None,
    ) -> None:
        self.identity = identity
        self.config = config
        self.network = network
        self.escrow = escrow
        self.store = store
        self.offer = offer
        self.spec = spec
        self.job_id = job_id
        self.emit = emit
        self.cancel = cancel
        self.fetcher = fetcher
        self.output_dir = output_dir
        self.clock = network.now
        self.negotiation = RenterNegotiation(identity, offer, spec)
        self.peer = PeerRef.from_offer(offer)
        self._announce: ChannelOpened | None = None  # set by resume()
        self.quote: Quote | None = None
        self.channel: OpenedChannel | None = None
        self.reclaimable_at = 0
        self.meter: RenterMeter | None = None
        self.acknowledged = 0
        self.disputes: list[str] = []
        self.manifest: OutputManifest | None = None
        self.final: JobStatus | None = None
        self._receipts_signed = 0
        self._clock_offset: int | None = None  # least (our clock - a report's at) seen
        self._too_late = ""  # why nothing more is signed (we answered after the deadline)
        self.reconnects = 0  # metering streams attached again after a loss
        self._redial_note = ""  # why a lost connection was not taken back

    # -- negotiation ------------------------------------------------------------------

    async def negotiate(self, gate: AgreementGate | None = None) -> Quote:
        """JobRequest → Quote → Agreement; raises :class:`JobRefused` on a refusal.

        Until the quote arrives, the short ``attempt_timeout_s`` bounds every step: a
        provider that does not answer a request within it is not worth waiting for (the
        caller tries others meanwhile). ``gate`` decides, once the quote is in, whether
        this attempt may go on to sign (only one of several racing may):
        :class:`Outraced` when it may not."""
        request = self.negotiation.make_request(now=self.clock(), job_id=self.job_id)
        short = self.config.attempt_timeout_s
        timeout = self.config.negotiate_timeout_s
        async with self.network.open_stream(self.peer, NEGOTIATE_PROTOCOL, timeout=short) as s:
            await s.send(request, timeout=short)
            reply = await s.receive(timeout=short)
            if isinstance(reply, ErrorMessage):
                raise JobRefused(reply.code, reply.message)
            if not isinstance(reply, Quote):
                raise ProviderMisbehaved(f"expected a quote, got {type(reply).__name__}")
            try:
                agreement = self.negotiation.on_quote(
                    reply, now=self.clock(), program_id=self.escrow.program_id
                )
            except ProtocolError as exc:
                raise ProviderMisbehaved(f"the quote is not acceptable: {exc}") from exc
            async with _turn(gate) as go:
                if not go:
                    raise Outraced(self.offer.provider)
                await s.send(agreement)
                answer = await s.receive(timeout=timeout)
                if isinstance(answer, ErrorMessage):
                    raise JobRefused(answer.code, answer.message)
                if not isinstance(answer, Agreement):
                    raise ProviderMisbehaved(f"expected the agreement, got {type(answer).__name__}")
                try:
                    self.negotiation.on_countersigned(answer)
                except SignatureError as exc:
                    raise ProviderMisbehaved(f"countersignature: {exc}") from exc
                if gate is not None:
                    gate.won(self)
        self.quote = reply
        now = self.clock()
        self.store.insert_job(
            JobRecord(
                job_id=self.job_id,
                role="renter",
                state="agreed",
                counterparty=self.offer.provider,
                created_at=now,
                updated_at=now,
                request=encode(request),
                quote=encode(reply),
                agreement=encode(answer),
            )
        )
        self.emit(Agreed(reply))
        return reply

    # -- funding ----------------------------------------------------------------------

    async def fund(self) -> OpenedChannel:
        """Open and fund the channel; stored before it is announced to anyone."""
        quote = self.quote
        assert quote is not None
        expiry = self.clock() + quote.max_duration_s + self.config.channel_margin_s
        try:
            opened = await self.escrow.open_channel(
                self.identity,
                provider=quote.provider,
                mint=quote.mint,
                deposit=quote.deposit,
                expiry=expiry,
                bounds=ChannelBounds(self.config.max_fee_bps, self.config.max_dispute_window_s),
            )
        except DgpuError as exc:
            self.store.update_job(
                self.job_id, "renter", now=self.clock(), state="failed", detail=str(exc)[:256]
            )
            raise FundingFailed(f"could not open the escrow channel: {exc}") from exc
        # The deposit is on chain now: nothing may stop the channel being stored (without
        # the record the renter could never reclaim it), so a failed read-back of the
        # dispute window falls back to the expiry (reclaim reads the chain anyway).
        try:
            state = await self.escrow.read_channel(opened.address)
        except DgpuError as exc:
            log.warning(
                "channel %s opened, but reading it back failed: %s", opened.address.hex(), exc
            )
            state = None
        self.reclaimable_at = state.reclaimable_at if state is not None else opened.expiry
        now = self.clock()
        self.store.save_channel(
            ChannelRecord(
                channel=opened.address,
                job_id=self.job_id,
                provider=quote.provider,
                mint=quote.mint,
                deposit=opened.deposit,
                open_nonce=opened.open_nonce,
                expires_at=self.reclaimable_at,
                open_signature=opened.signature,
                status="open",
                reclaim_signature="",
                reclaimed=0,
                updated_at=now,
            )
        )
        self.store.update_job(
            self.job_id,
            "renter",
            now=now,
            state="funded",
            channel=opened.address,
            open_nonce=opened.open_nonce,
            deposit=opened.deposit,
            channel_expires_at=opened.expiry,
        )
        self.channel = opened
        self.emit(Funded(opened))
        return opened

    # -- running ----------------------------------------------------------------------

    async def execute(self) -> JobResult:
        """Announce the channel, pay as the job runs, fetch the outputs. A metering
        stream lost while the job runs is redialled (:meth:`_redial`)."""
        quote, channel = self.quote, self.channel
        assert quote is not None and channel is not None
        announce = self._announce or self.negotiation.channel_opened(
            channel=channel.address,
            open_nonce=channel.open_nonce,
            expires_at=channel.expiry,
            signature=channel.signature,
        )
        detail = ""
        try:
            lost = await self._meter_on_stream(announce)
            if lost is not None:
                lost = await self._redial(announce, lost)
            if lost is not None:
                raise lost
        except JobRefused:
            self._record_end("failed", None, "refused after funding")
            raise
        except NetTimeout as exc:
            detail = f"the provider went silent: {exc}"
        except NetError as exc:
            detail = f"lost the provider: {exc}"
        if self._redial_note:
            detail = f"{detail}; {self._redial_note}" if detail else self._redial_note
        outputs = await self._fetch_outputs() if self.final is not None else []
        return self._result(outputs, detail)

    async def _meter_on_stream(
        self, announce: ChannelOpened, *, within: float | None = None
    ) -> NetError | None:
        """One metering stream: announce the channel (opened and first answered
        ``within`` seconds, when given), then pay until the job's final status. Returns
        the error that broke the stream once it ran (None: the job ended on it); raises
        when it could not be opened or the provider refused."""
        open_s, first_s = self.config.negotiate_timeout_s, self.config.start_timeout_s
        if within is not None:
            open_s, first_s = min(open_s, within), min(first_s, within)
        try:
            async with self.network.open_stream(
                self.peer, METERING_PROTOCOL, timeout=open_s
            ) as stream:
                await stream.send(announce)
                first = await self._receive(stream, first_s)
                if isinstance(first, ErrorMessage):
                    raise JobRefused(first.code, first.message)
                await self._handle(first, stream)
                if within is not None:  # a redial: the receipt lost with the old stream
                    await self._resend_last_receipt(stream)
                lost: NetError | None = None
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._send_cancel_on_request, stream)
                    try:
                        await self._receive_until_final(stream)
                    except NetError as exc:
                        lost = exc
                    nursery.cancel_scope.cancel()
                if lost is not None:
                    raise _StreamLost(lost)  # leaves the stream by a reset
        except _StreamLost as broke:
            return broke.error
        return None

    async def _resend_last_receipt(self, stream: MessageStream) -> None:
        """The receipt signed last may have been lost with the old connection: send it
        again (receipts are cumulative, a copy the provider has changes nothing)."""
        last = self.store.latest_receipt("renter", self.job_id)
        if last is not None:
            await stream.send(last)

    async def _redial(self, announce: ChannelOpened, lost: NetError) -> NetError | None:
        """The metering stream broke while the job ran: dial the provider again and
        attach a new metering stream to the running job (the provider takes one from
        this very key for this very channel). The provider keeps an unpaid job for
        interval + grace, so that is how long this tries after each loss; a provider
        that ended the job meanwhile refuses, and what was signed stays what is paid.
        Returns the last loss when the job could not be taken back, else None."""
        quote = self.quote
        assert quote is not None
        if self.meter is None or self.cancel.is_set():
            return lost  # it never ran (nothing to take back) or we are leaving
        window = quote.interval_s + quote.grace_s
        if isinstance(lost, NetTimeout):
            # silent for longer than interval + grace: nothing was signed meanwhile, so
            # the provider has stopped the job already; a redial could only hear that
            self._redial_note = (
                f"nothing came from the provider for longer than interval + grace ({window}s):"
                " cut off (a partition?); it stops such a job for non-payment, so what was"
                " signed before is what it is paid"
            )
            return lost
        while True:
            log.warning(
                "job %s: lost the provider (%s); redialling for up to %ds",
                self.job_id.hex(),
                lost,
                window,
            )
            deadline = trio.current_time() + window
            tries = 0
            while True:
                if self.cancel.is_set() or trio.current_time() >= deadline:
                    self._redial_note = (
                        f"the connection dropped and {tries} redial(s) in {window}s"
                        " (interval + grace) did not reach the provider; what was signed"
                        " before is what it is paid"
                    )
                    return lost
                tries += 1
                try:
                    again = await self._meter_on_stream(
                        announce, within=max(0.1, deadline - trio.current_time())
                    )
                except JobRefused as exc:
                    self._redial_note = (
                        f"the connection dropped; redialled, the provider had ended the job"
                        f" ({exc.reason}); what was signed before is what it is paid"
                    )
                    return lost
                except NetError as exc:
                    log.info("job %s: redial %d failed: %s", self.job_id.hex(), tries, exc)
                    await trio.sleep(min(1.0, max(0.0, deadline - trio.current_time())))
                    continue
                self.reconnects += 1
                log.warning(
                    "job %s: reconnected to the provider (redial %d); metering resumed",
                    self.job_id.hex(),
                    tries,
                )
                if again is None:
                    return None  # the job ended on the new stream
                lost = again
                break

    def resume(
        self,
        *,
        quote: Quote,
        channel: OpenedChannel,
        started_at: int | None,
        signed: Receipt | None,
        reclaimable_at: int,
    ) -> None:
        """Take a funded job back from the store after this node restarted: the next
        :meth:`execute` attaches a new metering stream to the provider's running job.

        The meter starts from the last receipt stored (what was signed stays signed)
        and from the start time stored when the job started, so the renter's own clock
        still bounds every new receipt: it never signs for more seconds than passed
        since the job started, and nothing for a job the provider already ended."""
        self.quote, self.channel, self.reclaimable_at = quote, channel, reclaimable_at
        self._announce = sign(
            ChannelOpened(
                job_id=self.job_id,
                channel=channel.address,
                open_nonce=channel.open_nonce,
                deposit=quote.deposit,
                expires_at=channel.expiry,
                signature=channel.signature,
            ),
            self.identity,
        )
        if started_at is not None:
            self.meter = RenterMeter(
                self.identity,
                quote,
                ChannelRef(
                    program_id=self.escrow.program_id,
                    channel=channel.address,
                    open_nonce=channel.open_nonce,
                    deposit=quote.deposit,
                ),
                started_at=started_at,
                tolerance_s=self.config.tolerance_s,
                signed=signed.cumulative if signed else 0,
                receipt_seq=signed.seq if signed else 0,
            )

    def closed_while_away(self, detail: str) -> JobResult:
        """The result of a resumed job the provider had already ended: what was signed
        before is all there is."""
        return self._result([], detail)

    def _silence_timeout(self) -> float:
        if self.config.silence_timeout_s:
            return float(self.config.silence_timeout_s)
        assert self.quote is not None
        return float(self.quote.interval_s + self.quote.grace_s + 30)

    async def _receive_until_final(self, stream: MessageStream) -> None:
        while self.final is None:
            message = await self._receive(stream, self._silence_timeout())
            await self._handle(message, stream)

    async def _receive(self, stream: MessageStream, wait_s: float) -> AnyMessage:
        """The provider's next message; a frame that does not decode is logged and
        skipped (as the provider skips a renter's), never fatal to the job's result."""
        while True:
            try:
                return await stream.receive(timeout=wait_s)
            except ProtocolError as exc:
                log.warning(
                    "job %s: undecodable message from the provider: %s", self.job_id.hex(), exc
                )

    async def _send_cancel_on_request(self, stream: MessageStream) -> None:
        await self.cancel.wait()
        await self._cancel(stream, "cancelled by the renter")

    async def _cancel(self, stream: MessageStream, reason: str) -> None:
        message = sign(Cancel(job_id=self.job_id, reason=reason[:256]), self.identity)
        try:
            await stream.send(message)
        except NetError as exc:
            log.info("could not send the cancel: %s", exc)

    async def _handle(self, message: object, stream: MessageStream) -> None:
        quote = self.quote
        assert quote is not None
        if isinstance(message, UsageReport):
            await self._on_report(message, stream)
        elif isinstance(message, LogChunk):
            if message.job_id == self.job_id:
                self.emit(LogReceived(message.stream, message.data))
        elif isinstance(message, ReceiptAck):
            self._on_ack(message)
        elif isinstance(message, JobStatus):
            self._on_status(message)
        elif isinstance(message, OutputManifest):
            try:
                verify(message, quote.provider)
            except SignatureError as exc:
                self.disputes.append(f"output manifest not signed by the provider: {exc}")
                return
            self.manifest = message
        elif isinstance(message, ErrorMessage):
            log.warning("provider says %s: %s", message.code, message.message)
        else:
            log.info("unexpected %s from the provider ignored", type(message).__name__)

    def _start_meter(self) -> RenterMeter:
        quote, channel = self.quote, self.channel
        assert quote is not None and channel is not None
        if self.meter is None:
            self.meter = RenterMeter(
                self.identity,
                quote,
                ChannelRef(
                    program_id=self.escrow.program_id,
                    channel=channel.address,
                    open_nonce=channel.open_nonce,
                    deposit=quote.deposit,
                ),
                started_at=self.clock(),
                tolerance_s=self.config.tolerance_s,
            )
            self.store.update_job(
                self.job_id, "renter", now=self.clock(), state="running", started_at=self.clock()
            )
            self.emit(Started(self.job_id))
        return self.meter

    def _on_ack(self, ack: ReceiptAck) -> None:
        if ack.job_id != self.job_id:
            return
        if self.meter is not None and ack.cumulative <= self.meter.signed:
            self.acknowledged = max(self.acknowledged, ack.cumulative)

    def _on_status(self, status: JobStatus) -> None:
        if status.job_id != self.job_id:
            return
        if status.state == "running":
            self._start_meter()
        elif status.state in FINAL_STATES:
            self.final = status
            self.emit(Ended(status.state, status.exit_code, status.detail))

    async def _on_report(self, report: UsageReport, stream: MessageStream) -> None:
        meter = self._start_meter()
        stop_after = self.config.faults.stop_signing_after
        if stop_after is not None and self._receipts_signed >= stop_after:
            return
        if self.disputes:
            return  # a provider caught over-claiming gets nothing more
        if self._answered_too_late(report):
            return
        try:
            receipt = meter.on_report(report, now=self.clock())
        except RenterRefusal as exc:
            reason = f"refused report {report.seq}: {exc}"
            log.warning("%s", reason)
            self.disputes.append(reason)
            self.emit(ReportRefused(reason))
            await self._send_error(stream, reason)
            await self._cancel(stream, "usage report refused")
            return
        if receipt is None:
            return
        self.store.save_receipt("renter", receipt, now=self.clock())  # durable, then send
        self._receipts_signed += 1
        await stream.send(receipt)
        self.emit(ReceiptSigned(receipt.seq, report.elapsed_s, receipt.cumulative))

    def _answered_too_late(self, report: UsageReport) -> bool:
        """Whether the provider has, by the agreement, stopped the job before we read
        ``report`` (see the module docstring); once true it stays true."""
        quote = self.quote
        assert quote is not None
        now = self.clock()
        offset = now - report.at
        if self._clock_offset is None or offset < self._clock_offset:
            self._clock_offset = offset
        age = offset - self._clock_offset
        if not self._too_late and age > quote.grace_s:
            self._too_late = (
                f"this node read a usage report {age}s after it was made (paused, suspended"
                f" or cut off?), past the {quote.grace_s}s grace: the provider stops such a"
                " job for non-payment, so nothing was signed after"
            )
            log.warning("job %s: %s", self.job_id.hex(), self._too_late)
        return bool(self._too_late)

    async def _send_error(self, stream: MessageStream, reason: str) -> None:
        try:
            await stream.send(
                ErrorMessage(code="over_limit", message=reason[:256], job_id=self.job_id)
            )
        except NetError:
            log.debug("could not send the refusal", exc_info=True)

    # -- the end ----------------------------------------------------------------------

    async def _fetch_outputs(self) -> list[FetchedOutput]:
        manifest = self.manifest
        if manifest is None:
            return []
        listed = [FetchedOutput(f.path, f.sha256.hex(), f.size, None) for f in manifest.files]
        if self.fetcher is None or self.output_dir is None or self.quote is None:
            return listed
        fetched: list[FetchedOutput] = []
        for f in manifest.files:
            try:
                target = confined(self.output_dir, f.path)
                await self.fetcher.fetch(quote=self.quote, file=f, dest=target)
            except DgpuError as exc:
                # The job and its payment are over: a bad output is a dispute in the
                # result, never a reason to lose the result (and the money fields).
                reason = f"output {f.path!r} not fetched: {exc}"
                log.warning("job %s: %s", self.job_id.hex(), reason)
                self.disputes.append(reason[:512])
                fetched.append(FetchedOutput(f.path, f.sha256.hex(), f.size, None))
                continue
            fetched.append(FetchedOutput(f.path, f.sha256.hex(), f.size, target))
            self.emit(OutputFetched(f.path, f.size))
        return fetched

    def _record_end(self, state: str, exit_code: int | None, detail: str) -> None:
        billed = self._seconds_billed()
        self.store.update_job(
            self.job_id,
            "renter",
            now=self.clock(),
            state=state if state in FINAL_STATES else "abandoned",
            ended_at=self.clock(),
            exit_code=exit_code,
            detail=detail[:256],
            seconds_billed=billed,
        )

    def _seconds_billed(self) -> int:
        quote = self.quote
        assert quote is not None
        per_second = quote.price_per_gpu_second * quote.gpu_count
        signed = self.meter.signed if self.meter else 0
        return math.ceil(signed / per_second) if per_second else 0

    def _result(self, outputs: list[FetchedOutput], detail: str) -> JobResult:
        quote, channel = self.quote, self.channel
        assert quote is not None and channel is not None
        state: str
        if self.final is not None:
            state, exit_code = self.final.state, self.final.exit_code
            detail = self.final.detail or detail
        else:
            state, exit_code = "aborted", None
        if self._too_late:
            detail = f"{detail}; {self._too_late}" if detail else self._too_late
        self._record_end(state, exit_code, detail)
        return JobResult(
            job_id=self.job_id,
            provider=quote.provider,
            state=state,
            exit_code=exit_code,
            detail=detail,
            price_per_gpu_second=quote.price_per_gpu_second,
            gpu_count=quote.gpu_count,
            seconds_billed=self._seconds_billed(),
            amount_paid=self.meter.signed if self.meter else 0,
            acknowledged=self.acknowledged,
            deposit=quote.deposit,
            channel=channel.address,
            open_nonce=channel.open_nonce,
            reclaimable_at=self.reclaimable_at,
            outputs=outputs,
            disputes=list(self.disputes),
        )


def confined(root: Path, relative: str) -> Path:
    """``root / relative`` for a path a provider named, refusing any that escapes ``root``."""
    normal = posixpath.normpath(relative)
    if normal.startswith(("/", "../")) or normal in ("..", ".") or "\x00" in normal:
        raise OutputMismatch(relative, "path outside the output directory")
    return root / normal
