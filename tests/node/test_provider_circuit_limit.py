"""A job a relay circuit cannot carry is refused at negotiation, in words naming both
numbers (``check_circuit``); the wire path (a relay's STOP limit seen by a provider
behind a symmetric NAT) is in ``tests/hosts/test_relay_limits.py``."""

from __future__ import annotations

import pytest
from dgpu.node.net.interface import CircuitLimit
from dgpu.node.provider.funding import Refusal, check_circuit
from dgpu.protocol import Identity, OfferTerms, make_offer
from dgpu.protocol.messages import JobRequest
from dgpu.protocol.negotiation import JobSpec, RenterNegotiation

MIB = 1024 * 1024


def _request(*, output: int = 0, duration: int = 60) -> JobRequest:
    """A request as a renter makes it (:class:`RenterNegotiation`)."""
    terms = OfferTerms("RTX 4090", 1, 24_000, 10, bytes(32), "local", 7200, simulated=True)
    offer = make_offer(
        Identity.generate(), terms, multiaddrs=["/ip4/127.0.0.1/tcp/1"], now=1, ttl_s=60
    )
    spec = JobSpec("busybox", ("true",), "RTX 4090", 1, duration, 10, max_output_bytes=output)
    return RenterNegotiation(Identity.generate(), offer, spec).make_request(now=1, job_id=bytes(16))


def test_a_job_within_the_circuit_passes() -> None:
    check_circuit(_request(output=8 * MIB, duration=600), CircuitLimit(32 * MIB, 3600))
    check_circuit(_request(output=32 * MIB, duration=3600), CircuitLimit(32 * MIB, 3600))


def test_no_stated_limit_is_no_limit() -> None:
    check_circuit(_request(output=10**12, duration=7200), CircuitLimit(0, 0))


def test_more_output_than_the_circuit_carries_is_refused_naming_both_numbers() -> None:
    with pytest.raises(Refusal) as refused:
        check_circuit(_request(output=64 * MIB), CircuitLimit(32 * MIB, 3600))
    assert refused.value.code == "over_limit"
    assert f"at most {32 * MIB} bytes" in refused.value.message
    assert f"may move {64 * MIB} bytes" in refused.value.message
    assert len(refused.value.message) <= 256  # what goes on the wire, whole


def test_a_longer_job_than_the_circuit_lives_is_refused_naming_both_numbers() -> None:
    with pytest.raises(Refusal) as refused:
        check_circuit(_request(duration=7200), CircuitLimit(32 * MIB, 3600))
    assert refused.value.code == "over_limit"
    assert "at most 3600 s" in refused.value.message
    assert "may run 7200 s" in refused.value.message
    assert len(refused.value.message) <= 256
