"""Per-peer stream caps and rates, and the room kept for funded jobs (issue 12, attacks 3-4)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from dgpu.node.net.admission import AdmissionConfig, StreamAdmission


def admission(**changes: int) -> tuple[StreamAdmission, list[float]]:
    now = [0.0]
    base = AdmissionConfig(
        max_streams=10, reserved=3, max_streams_per_peer=4, rate_per_s=2.0, burst=5
    )
    config = replace(base, **changes)
    return StreamAdmission(config, clock=lambda: now[0]), now


def test_one_peer_gets_at_most_its_cap_of_streams_at_once() -> None:
    gate, _ = admission(burst=100)
    assert [gate.try_admit("flood") for _ in range(6)] == [None] * 4 + ["per_peer"] * 2
    assert gate.try_admit("honest") is None
    gate.release("flood")
    assert gate.try_admit("flood") is None


def test_a_peer_opening_streams_too_fast_is_refused_until_its_bucket_refills() -> None:
    gate, now = admission(max_streams_per_peer=100, max_streams=200)
    results = []
    for _ in range(8):
        results.append(gate.try_admit("flood"))
        if results[-1] is None:
            gate.release("flood")
    assert results == [None] * 5 + ["rate"] * 3
    now[0] += 1.0  # two tokens per second
    assert gate.try_admit("flood") is None and gate.try_admit("flood") is None
    assert gate.try_admit("flood") == "rate"
    assert gate.try_admit("other") is None  # other peers have their own bucket


def test_the_reserved_room_serves_only_protected_peers_who_skip_per_peer_limits() -> None:
    gate, _ = admission(burst=100, max_streams_per_peer=100)
    for _ in range(7):  # 10 - 3 reserved
        assert gate.try_admit("crowd") is None
    assert gate.try_admit("someone") == "total"
    gate.protect("funded")
    assert [gate.try_admit("funded") for _ in range(4)] == [None, None, None, "total"]
    gate.protect("funded")
    gate.unprotect("funded")
    assert gate.is_protected("funded")  # counted per job
    gate.unprotect("funded")
    assert not gate.is_protected("funded")
    assert gate.refused["total"] == 2


def test_buckets_stay_bounded_under_fresh_identities() -> None:
    gate, _ = admission(max_streams=10_000, reserved=0, max_tracked_peers=50)
    for index in range(500):
        assert gate.try_admit(f"sybil-{index}") is None
        gate.release(f"sybil-{index}")
    assert len(gate._buckets) <= 50
    assert gate.open_streams == 0


def test_reserved_must_leave_shared_room() -> None:
    with pytest.raises(ValueError, match="reserved"):
        AdmissionConfig(max_streams=4, reserved=4)
