"""The metering channel (sans-IO): UsageReport <-> Receipt for the life of one job.

Money rule: the amount owed after ``t`` billed seconds is
``min(t, max_duration) * price_per_gpu_second * gpu_count``, never above the deposit.

Provider side (:class:`ProviderMeter`): makes a signed report every interval, accepts a
receipt only if it verifies and raises the cumulative amount (the node must persist it
before going on), and tells the node to stop the job when no receipt has covered the
work within the grace period, or when the next interval would exceed the escrow.

Renter side (:class:`RenterMeter`): checks each report against the agreement and its own
clock, and signs a receipt for at most what the agreement allows for the elapsed time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dgpu.protocol.errors import DecodeError, SignatureError, StateError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import GpuSample, Quote, Receipt, UsageReport
from dgpu.protocol.signing import sign, sign_receipt, verify, verify_receipt


@dataclass(frozen=True)
class ChannelRef:
    """The escrow channel that pays this job."""

    program_id: bytes
    channel: bytes
    open_nonce: int
    deposit: int


def amount_for(quote: Quote, elapsed_s: int) -> int:
    billable = max(0, min(elapsed_s, quote.max_duration_s))
    return billable * quote.price_per_gpu_second * quote.gpu_count


class StopReason(enum.Enum):
    NON_PAYMENT = "non_payment"
    ESCROW_EXHAUSTED = "escrow_exhausted"
    MAX_DURATION = "max_duration"


@dataclass
class ProviderMeter:
    identity: Identity
    quote: Quote
    channel: ChannelRef
    started_at: int
    seq: int = 0
    paid: int = 0  # highest cumulative receipt accepted
    paid_through_s: int = 0  # seconds covered by that receipt
    latest: Receipt | None = None

    def report(
        self, *, now: int, samples: list[GpuSample], until: int | None = None
    ) -> UsageReport:
        """The next report, made at ``now`` for the work up to ``until`` (``now``: the
        job ran all along; earlier: it stopped then, e.g. by the watchdog while this
        process was frozen, and what came after is not billed)."""
        end = now if until is None else min(until, now)
        elapsed = max(0, min(end - self.started_at, self.quote.max_duration_s))
        self.seq += 1
        due = min(amount_for(self.quote, elapsed), self.channel.deposit)
        return sign(
            UsageReport(
                job_id=self.quote.job_id,
                seq=self.seq,
                elapsed_s=elapsed,
                amount_due=due,
                samples=samples,
                at=now,
            ),
            self.identity,
        )

    def on_receipt(self, receipt: Receipt) -> bool:
        """Validate a receipt. True when it raises what we hold (persist it, then ack);
        False when it is valid but adds nothing. Raises on anything invalid."""
        expected = {
            "job_id": self.quote.job_id,
            "renter": self.quote.renter,
            "program_id": self.channel.program_id,
            "channel": self.channel.channel,
            "open_nonce": self.channel.open_nonce,
        }
        for name, value in expected.items():
            if getattr(receipt, name) != value:
                raise DecodeError("receipt is for another channel or job", field=name)
        if receipt.cumulative > self.channel.deposit:
            raise DecodeError("receipt exceeds the deposit", field="cumulative")
        verify_receipt(receipt)
        if receipt.cumulative <= self.paid:
            return False
        self.paid = receipt.cumulative
        per_second = self.quote.price_per_gpu_second * self.quote.gpu_count
        self.paid_through_s = self.paid // per_second if per_second else 0
        self.latest = receipt
        return True

    def unpaid_too_long(self, *, now: int) -> bool:
        """Whether the work not covered by a receipt reached interval + grace: the most a
        provider risks. The node checks this every second, not only at each report, so
        the bound holds to the second (checked only per interval it was about
        2 x interval + grace)."""
        unpaid = now - self.started_at - self.paid_through_s
        return unpaid >= self.quote.interval_s + self.quote.grace_s

    def should_stop(self, *, now: int) -> StopReason | None:
        elapsed = now - self.started_at
        if elapsed >= self.quote.max_duration_s:
            return StopReason.MAX_DURATION
        if self.unpaid_too_long(now=now):
            return StopReason.NON_PAYMENT
        next_due = amount_for(self.quote, elapsed + self.quote.interval_s)
        if next_due > self.channel.deposit and elapsed + self.quote.interval_s <= (
            self.quote.max_duration_s
        ):
            return StopReason.ESCROW_EXHAUSTED
        return None


class RenterRefusal(DecodeError):
    """A usage report the renter will not pay for."""


@dataclass
class RenterMeter:
    identity: Identity
    quote: Quote
    channel: ChannelRef
    started_at: int
    tolerance_s: int = 2
    last_seq: int = 0
    signed: int = 0
    receipt_seq: int = 0

    def allowed(self, *, now: int) -> int:
        """The most the renter will owe at ``now`` by its own clock."""
        elapsed = now - self.started_at + self.tolerance_s
        return min(amount_for(self.quote, elapsed), self.channel.deposit)

    def on_report(self, report: UsageReport, *, now: int) -> Receipt | None:
        """Check a report and sign a receipt for it; None if nothing new is owed."""
        if report.job_id != self.quote.job_id:
            raise RenterRefusal("report is for another job", field="job_id")
        try:
            verify(report, self.quote.provider)
        except SignatureError as exc:
            raise RenterRefusal(f"report signature: {exc}", field="sig") from exc
        if report.seq <= self.last_seq:
            raise RenterRefusal("report sequence went backwards or repeated", field="seq")
        if report.amount_due != min(amount_for(self.quote, report.elapsed_s), self.channel.deposit):
            raise RenterRefusal("amount does not match price x elapsed", field="amount_due")
        if report.amount_due > self.allowed(now=now):
            raise RenterRefusal(
                f"report claims {report.amount_due}, at most {self.allowed(now=now)} is due now",
                field="elapsed_s",
            )
        self.last_seq = report.seq
        if report.amount_due <= self.signed:
            return None
        return self.sign_up_to(report.amount_due)

    def sign_up_to(self, cumulative: int) -> Receipt:
        if cumulative < self.signed:
            raise StateError("receipts are cumulative: cannot sign less than before")
        if cumulative > self.channel.deposit:
            raise StateError("cannot sign beyond the deposit")
        self.receipt_seq += 1
        self.signed = cumulative
        return sign_receipt(
            Receipt(
                job_id=self.quote.job_id,
                seq=self.receipt_seq,
                renter=self.identity.public_key,
                program_id=self.channel.program_id,
                channel=self.channel.channel,
                open_nonce=self.channel.open_nonce,
                cumulative=cumulative,
            ),
            self.identity,
        )
