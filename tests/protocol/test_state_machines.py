"""Negotiation and metering state machines, driven as the node drives them."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from dgpu.protocol import Identity, OfferTerms, SignatureError, StateError, make_offer
from dgpu.protocol.errors import DecodeError
from dgpu.protocol.messages import Quote
from dgpu.protocol.metering import (
    ChannelRef,
    ProviderMeter,
    RenterMeter,
    RenterRefusal,
    StopReason,
    amount_for,
)
from dgpu.protocol.negotiation import (
    JobSpec,
    Phase,
    ProviderNegotiation,
    ProviderPolicy,
    Refused,
    RenterNegotiation,
)
from hypothesis import given
from hypothesis import strategies as st

PROVIDER = Identity.from_label("provider")
RENTER = Identity.from_label("renter")
MINT = b"\x05" * 32
PROGRAM = b"\x07" * 32
NOW = 1_700_000_000
PRICE = 1_000
POLICY = ProviderPolicy(
    price_per_gpu_second=PRICE,
    gpu_model="H100",
    free_gpus=2,
    mint=MINT,
    program_id=PROGRAM,
    max_duration_s=3600,
    interval_s=10,
    grace_s=20,
    allowed_images=frozenset({"dgpu/busybox:latest"}),
)
OFFER = make_offer(
    PROVIDER,
    OfferTerms("H100", 2, 81920, PRICE, MINT, "eu", 3600, simulated=True),
    multiaddrs=[],
    now=NOW,
    ttl_s=300,
)
SPEC = JobSpec("dgpu/busybox:latest", ("sh", "-c", "echo hi"), "H100", 1, 600, 2 * PRICE)


def negotiate(spec: JobSpec = SPEC) -> tuple[ProviderNegotiation, RenterNegotiation]:
    provider = ProviderNegotiation(PROVIDER)
    renter = RenterNegotiation(RENTER, OFFER, spec)
    request = renter.make_request(now=NOW, job_id=b"\x01" * 16)
    quote = provider.on_request(request, POLICY, now=NOW)
    agreement = renter.on_quote(quote, now=NOW, program_id=PROGRAM)
    countersigned = provider.on_agreement(agreement, now=NOW)
    renter.on_countersigned(countersigned)
    return provider, renter


def test_happy_negotiation() -> None:
    provider, renter = negotiate()
    assert provider.phase is Phase.AGREED and renter.phase is Phase.AGREED
    assert provider.quote is not None
    assert provider.quote.deposit == PRICE * 1 * 600
    opened = renter.channel_opened(channel=b"\x09" * 32, open_nonce=3, expires_at=NOW + 900)
    provider.on_channel_opened(opened)
    provider.on_channel_verified()
    final: Phase = provider.phase
    assert final is Phase.FUNDED


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        (JobSpec("evil/miner:latest", ("x",), "H100", 1, 600, 2 * PRICE), "image_not_allowed"),
        (JobSpec("dgpu/busybox:latest", ("x",), "H100", 1, 86_400, 2 * PRICE), "duration_too_long"),
        (JobSpec("dgpu/busybox:latest", ("x",), "H100", 1, 600, PRICE - 1), "price_too_low"),
        (JobSpec("dgpu/busybox:latest", ("x",), "A100", 1, 600, 2 * PRICE), "no_capacity"),
        (
            JobSpec("dgpu/busybox:latest", ("x",), "H100", 1, 600, 2 * PRICE, network=True),
            "bad_request",
        ),
    ],
)
def test_provider_refuses_bad_requests(spec: JobSpec, code: str) -> None:
    provider = ProviderNegotiation(PROVIDER)
    renter = RenterNegotiation(RENTER, OFFER, spec)
    request = renter.make_request(now=NOW, job_id=b"\x02" * 16)
    with pytest.raises(Refused) as info:
        provider.on_request(request, POLICY, now=NOW)
    assert info.value.code == code
    assert provider.phase is Phase.REFUSED


def test_forged_request_refused() -> None:
    renter = RenterNegotiation(RENTER, OFFER, SPEC)
    request = renter.make_request(now=NOW, job_id=b"\x02" * 16)
    forged = msgspec.structs.replace(request, max_price_per_gpu_second=10**12)
    with pytest.raises(Refused) as info:
        ProviderNegotiation(PROVIDER).on_request(forged, POLICY, now=NOW)
    assert info.value.code == "bad_signature"


def test_stale_request_refused() -> None:
    renter = RenterNegotiation(RENTER, OFFER, SPEC)
    request = renter.make_request(now=NOW - 10_000, job_id=b"\x02" * 16)
    with pytest.raises(Refused) as info:
        ProviderNegotiation(PROVIDER).on_request(request, POLICY, now=NOW)
    assert info.value.code == "expired"


def test_renter_refuses_quote_above_its_limit() -> None:
    provider = ProviderNegotiation(PROVIDER)
    renter = RenterNegotiation(RENTER, OFFER, SPEC)
    request = renter.make_request(now=NOW, job_id=b"\x03" * 16)
    greedy = dataclasses.replace(POLICY, price_per_gpu_second=2 * PRICE)
    quote = provider.on_request(request, greedy, now=NOW)
    # provider raises the price after quoting: re-sign a quote above the renter's limit
    from dgpu.protocol.signing import sign

    worse = sign(msgspec.structs.replace(quote, price_per_gpu_second=3 * PRICE), PROVIDER)
    with pytest.raises(DecodeError, match="price_per_gpu_second"):
        renter.on_quote(worse, now=NOW, program_id=PROGRAM)


def test_renter_refuses_quote_for_another_program() -> None:
    provider = ProviderNegotiation(PROVIDER)
    renter = RenterNegotiation(RENTER, OFFER, SPEC)
    quote = provider.on_request(renter.make_request(now=NOW, job_id=b"\x04" * 16), POLICY, now=NOW)
    with pytest.raises(DecodeError, match="program_id"):
        renter.on_quote(quote, now=NOW, program_id=b"\x08" * 32)


def test_renter_refuses_quote_with_another_output_limit() -> None:
    """The quote's output limit is what the renter will download: never more than asked."""
    from dgpu.protocol.signing import sign

    provider = ProviderNegotiation(PROVIDER)
    renter = RenterNegotiation(RENTER, OFFER, dataclasses.replace(SPEC, max_output_bytes=1024))
    quote = provider.on_request(renter.make_request(now=NOW, job_id=b"\x06" * 16), POLICY, now=NOW)
    assert quote.max_output_bytes == 1024
    bigger = sign(msgspec.structs.replace(quote, max_output_bytes=2**40), PROVIDER)
    with pytest.raises(DecodeError, match="max_output_bytes"):
        renter.on_quote(bigger, now=NOW, program_id=PROGRAM)
    assert renter.phase is Phase.REFUSED


def test_events_out_of_order_refused() -> None:
    provider, _ = negotiate()
    with pytest.raises(StateError):
        provider.on_channel_verified()


def metered(deposit: int | None = None) -> tuple[ProviderMeter, RenterMeter, Quote]:
    provider, _ = negotiate()
    assert provider.quote is not None
    quote = provider.quote
    channel = ChannelRef(PROGRAM, b"\x09" * 32, 3, quote.deposit if deposit is None else deposit)
    return (
        ProviderMeter(PROVIDER, quote, channel, started_at=NOW),
        RenterMeter(RENTER, quote, channel, started_at=NOW),
        quote,
    )


def test_metering_pays_price_times_elapsed() -> None:
    pmeter, rmeter, quote = metered()
    for t in range(10, 610, 10):
        report = pmeter.report(now=NOW + t, samples=[])
        receipt = rmeter.on_report(report, now=NOW + t)
        assert receipt is not None
        assert pmeter.on_receipt(receipt) is True
        assert pmeter.paid == PRICE * t == amount_for(quote, t)
        assert pmeter.should_stop(now=NOW + t) in (None, StopReason.MAX_DURATION)
    assert pmeter.should_stop(now=NOW + 600) is StopReason.MAX_DURATION


def test_renter_refuses_over_reported_usage() -> None:
    pmeter, rmeter, _ = metered()
    report = pmeter.report(now=NOW + 100, samples=[])  # provider claims 100 s
    with pytest.raises(RenterRefusal, match="at most"):
        rmeter.on_report(report, now=NOW + 20)  # renter's clock says 20 s
    assert rmeter.signed == 0


def test_renter_refuses_inflated_amount() -> None:
    pmeter, rmeter, _ = metered()
    report = pmeter.report(now=NOW + 10, samples=[])
    from dgpu.protocol.signing import sign

    inflated = sign(msgspec.structs.replace(report, amount_due=report.amount_due * 2), PROVIDER)
    with pytest.raises(RenterRefusal, match="amount"):
        rmeter.on_report(inflated, now=NOW + 10)


def test_replayed_or_old_receipt_adds_nothing() -> None:
    pmeter, rmeter, _ = metered()
    first = rmeter.on_report(pmeter.report(now=NOW + 10, samples=[]), now=NOW + 10)
    second = rmeter.on_report(pmeter.report(now=NOW + 20, samples=[]), now=NOW + 20)
    assert first is not None and second is not None
    assert pmeter.on_receipt(second) is True
    assert pmeter.on_receipt(first) is False
    assert pmeter.on_receipt(second) is False
    assert pmeter.paid == second.cumulative


def test_receipt_for_another_channel_or_forged_refused() -> None:
    pmeter, rmeter, _ = metered()
    receipt = rmeter.on_report(pmeter.report(now=NOW + 10, samples=[]), now=NOW + 10)
    assert receipt is not None
    with pytest.raises(DecodeError, match="channel"):
        pmeter.on_receipt(msgspec.structs.replace(receipt, channel=b"\x0a" * 32))
    with pytest.raises(DecodeError, match="open_nonce"):
        pmeter.on_receipt(msgspec.structs.replace(receipt, open_nonce=4))
    with pytest.raises(SignatureError):
        pmeter.on_receipt(msgspec.structs.replace(receipt, cumulative=receipt.cumulative + 1))
    assert pmeter.paid == 0


def test_provider_stops_when_renter_stops_paying() -> None:
    pmeter, rmeter, quote = metered()
    receipt = rmeter.on_report(pmeter.report(now=NOW + 10, samples=[]), now=NOW + 10)
    assert receipt is not None and pmeter.on_receipt(receipt)
    # unpaid work reaching interval + grace stops the job: that is the provider's risk
    limit = 10 + quote.interval_s + quote.grace_s
    assert pmeter.should_stop(now=NOW + limit - 1) is None
    assert not pmeter.unpaid_too_long(now=NOW + limit - 1)
    assert pmeter.should_stop(now=NOW + limit) is StopReason.NON_PAYMENT


def test_provider_stops_before_escrow_is_exceeded() -> None:
    pmeter, rmeter, _ = metered(deposit=PRICE * 55)
    receipt = rmeter.on_report(pmeter.report(now=NOW + 40, samples=[]), now=NOW + 40)
    assert receipt is not None and pmeter.on_receipt(receipt)
    assert pmeter.should_stop(now=NOW + 40) is None
    assert pmeter.should_stop(now=NOW + 46) is StopReason.ESCROW_EXHAUSTED


@given(st.lists(st.integers(1, 30), min_size=1, max_size=40))
def test_renter_never_signs_beyond_agreement(steps: list[int]) -> None:
    pmeter, rmeter, quote = metered(deposit=PRICE * 300)
    t = 0
    for step in steps:
        t += step
        try:
            receipt = rmeter.on_report(pmeter.report(now=NOW + t, samples=[]), now=NOW + t)
        except RenterRefusal:
            continue
        if receipt is not None:
            assert receipt.cumulative <= min(amount_for(quote, t + rmeter.tolerance_s), PRICE * 300)
            pmeter.on_receipt(receipt)
    assert rmeter.signed <= PRICE * 300
