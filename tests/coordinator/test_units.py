"""Pure pieces: score formula, "why no match", charts, request signatures, rate limits,
migrations."""

from __future__ import annotations

import math
import random
import re
import sqlite3
from pathlib import Path

import pytest
from dgpu.coordinator.api.address_pattern import ALPHABET, key_address_pattern
from dgpu.coordinator.auth import ReplayGuard, verify_request
from dgpu.coordinator.config import RateLimit
from dgpu.coordinator.db import migrations, open_database
from dgpu.coordinator.db.migrations import for_dialect, sqlite_statements
from dgpu.coordinator.errors import ApiError, StoreError
from dgpu.coordinator.explorer.charts import bar_chart, line_chart
from dgpu.coordinator.explorer.whynomatch import Candidate, explain
from dgpu.coordinator.ratelimit import RateLimiter
from dgpu.coordinator.scores import (
    WEIGHTS,
    JobEvidence,
    availability,
    price_performance,
    reliability,
    score_parts,
    uptime,
    volume,
)
from dgpu.coordinator.store import OfferQuery
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.http_auth import HEADER_NONCE, HEADER_SIGNATURE, sign_request
from dgpu.protocol.identity import Identity, address_of, public_key_of_address
from hypothesis import given
from hypothesis import strategies as st

ALICE = Identity.from_label("unit-alice")

# -- scores ---------------------------------------------------------------------------

intervals = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)).map(lambda t: (min(t), max(t))),
    max_size=20,
)
jobs = st.lists(
    st.builds(
        JobEvidence,
        settled=st.integers(0, 10**12),
        renter_report=st.sampled_from([None, "completed", "provider_fault", "renter_cancelled"]),
        provider_report=st.sampled_from([None, "completed", "provider_fault"]),
    ),
    max_size=30,
)


@given(
    jobs=jobs,
    spans=intervals,
    first_seen=st.integers(0, 10_000),
    settled=st.integers(0, 10**15),
    offers=st.lists(st.tuples(st.sampled_from(["H100", "A100", "X"]), st.integers(0, 10**7))),
)
def test_every_part_and_the_score_stay_in_0_1(
    jobs: list[JobEvidence],
    spans: list[tuple[int, int]],
    first_seen: int,
    settled: int,
    offers: list[tuple[str, int]],
) -> None:
    parts = score_parts(
        jobs=jobs,
        intervals=spans,
        first_seen=first_seen,
        now=10_000,
        window_s=5_000,
        settled=settled,
        offers=offers,
        references={"H100": 1_472_223, "A100": 1_111_112},
    )
    for value in (parts.reliability, parts.availability, parts.volume, parts.price_performance):
        assert 0.0 <= value <= 1.0
    assert 0.0 <= parts.score <= 1.0
    assert math.isclose(sum(WEIGHTS.values()), 1.0)


def test_reliability_counts_outcomes_by_who_reported() -> None:
    evidence = [
        JobEvidence(settled=5, renter_report=None, provider_report=None),  # paid: completed
        JobEvidence(settled=5, renter_report="provider_fault", provider_report="completed"),
        JobEvidence(settled=0, renter_report=None, provider_report="provider_fault"),
        JobEvidence(settled=0, renter_report="renter_cancelled", provider_report=None),
        JobEvidence(settled=0, renter_report=None, provider_report=None),  # unknown
    ]
    value, completed, faulted = reliability(evidence)
    assert (completed, faulted) == (1, 2)
    assert value == pytest.approx(2 / 5)
    assert reliability([])[0] == 0.5


small_intervals = st.lists(
    st.tuples(st.integers(0, 500), st.integers(0, 500)).map(lambda t: (min(t), max(t))),
    max_size=12,
)


@given(spans=small_intervals, extra=st.tuples(st.integers(0, 500), st.integers(0, 500)))
def test_uptime_is_the_union_and_grows_with_more_intervals(
    spans: list[tuple[int, int]], extra: tuple[int, int]
) -> None:
    covered = uptime(spans, 0, 500)
    seconds: set[int] = set()
    for lo, hi in spans:
        seconds.update(range(lo, hi))
    assert covered == len(seconds)
    assert uptime([*spans, (min(extra), max(extra))], 0, 500) >= covered


def test_availability_uses_the_time_since_first_seen() -> None:
    assert availability([(900, 1000)], first_seen=900, now=1000, window_s=3600)[0] == 1.0
    assert availability([(500, 550)], first_seen=500, now=1000, window_s=3600)[0] == 0.1
    assert availability([], first_seen=1000, now=1000, window_s=3600)[0] == 0.0


def test_volume_and_price_performance_anchor_points() -> None:
    assert volume(0) == 0.0
    assert volume(999 * 10**9) == pytest.approx(1.0)
    assert volume(10**20) == 1.0
    assert price_performance([("H100", 100)], {"H100": 100}) == 0.5
    assert price_performance([("H100", 50)], {"H100": 100}) == 1.0
    assert price_performance([("X", 50)], {"H100": 100}) == 0.0


# -- why no match ---------------------------------------------------------------------

BOOK = [
    Candidate("H100", 8, 81_920, 1_500_000, "eu-west", 0.6, False),
    Candidate("H100", 1, 81_920, 1_400_000, "us-east", 0.7, False),
    Candidate("RTX 4090", 2, 24_576, 400_000, "eu-west", 0.5, True),
]


def test_a_single_blocking_filter_is_named_with_a_hint() -> None:
    result = explain(BOOK, OfferQuery(model_key="H100", max_price=1_000))
    assert result.matches == 0
    assert [v.name for v in result.blocking] == ["max_price"]
    assert result.blocking[0].hint == "the cheapest is 1400000 per GPU-second"


def test_matches_and_jointly_blocking_filters() -> None:
    assert explain(BOOK, OfferQuery(model_key="H100")).matches == 2
    joint = explain(BOOK, OfferQuery(model_key="RTX 4090", count=4, region="us-east"))
    assert joint.matches == 0 and joint.blocking == ()
    assert explain([], OfferQuery(region="eu-west")).live == 0


# -- charts ---------------------------------------------------------------------------


def test_line_chart_scales_into_the_frame() -> None:
    chart = line_chart(
        {"H100": [(0, 10), (60, 40)], "A100": [(30, 20)]}, width=200, height=100, pad=10
    )
    assert chart is not None
    for series in chart.series:
        for point in series.points.split():
            x, y = map(float, point.split(","))
            assert 10 <= x <= 190 and 10 <= y <= 90
    assert chart.y_ticks[-1][1] == 50  # the nice ceiling above 40
    assert line_chart({}) is None


def test_bar_chart_is_proportional() -> None:
    bars = bar_chart([("H100", 12, 0), ("A100", 6, 3)], width=300)
    assert [b.width for b in bars] == [300.0, 150.0]
    assert bars[1].sim_width == 75.0


# -- request signatures -----------------------------------------------------------------


async def _verify(headers: dict[str, str], body: bytes, guard: ReplayGuard, now: int = 1000) -> str:
    return await verify_request(
        headers, "POST", "/api/v1/offers", "", body, now=now, window_s=60, guard=guard
    )


async def test_signed_requests_verify_once() -> None:
    guard = ReplayGuard(60)
    headers = sign_request(ALICE, "POST", "/api/v1/offers", b"body", timestamp=1000)
    assert await _verify(headers, b"body", guard) == ALICE.address
    with pytest.raises(ApiError) as replay:
        await _verify(headers, b"body", guard)
    assert replay.value.code == "replayed"
    nonced = sign_request(ALICE, "POST", "/api/v1/offers", b"body", timestamp=1000, nonce="n1")
    assert await _verify(nonced, b"body", guard) == ALICE.address
    assert nonced[HEADER_NONCE] == "n1"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({HEADER_NONCE: "other"}, "bad_signature"),
        ({HEADER_NONCE: "bad nonce!"}, "bad_auth_header"),
        ({HEADER_SIGNATURE: "AAAA"}, "bad_signature"),
        ({"X-Dgpu-Timestamp": "1061"}, "stale_request"),
        ({"X-Dgpu-Timestamp": "99999999999999"}, "bad_auth_header"),
    ],
)
async def test_tampered_headers_are_refused(change: dict[str, str], code: str) -> None:
    headers = sign_request(ALICE, "POST", "/api/v1/offers", b"body", timestamp=1000) | change
    with pytest.raises(ApiError) as refused:
        await _verify(headers, b"body", ReplayGuard(60))
    assert (refused.value.status, refused.value.code) == (401, code)


async def test_replay_guard_forgets_after_the_window() -> None:
    guard = ReplayGuard(60)
    await guard.check_and_remember(b"s", 1000, 1000)
    await guard.check_and_remember(b"t", 1100, 1100)  # prunes "s" (its window ended at 1060)
    assert len(guard) == 1


async def test_rate_limiter_refills_and_says_when() -> None:
    limiter = RateLimiter(RateLimit(per_second=0.5, burst=2), name="signer")
    await limiter.take("k", 0.0)
    await limiter.take("k", 0.0)
    with pytest.raises(ApiError) as limited:
        await limiter.take("k", 0.0)
    assert limited.value.status == 429 and limited.value.headers == {"Retry-After": "2"}
    await limiter.take("k", 2.0)
    await limiter.take("other", 2.0)


# -- migrations -------------------------------------------------------------------------


def test_migrations_are_numbered_and_split_into_statements() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    trigger = sqlite_statements(
        "-- c\nCREATE TABLE a (x);\nCREATE TRIGGER t AFTER INSERT ON a\nBEGIN\n"
        "  INSERT INTO a VALUES (1);\nEND;\n"
    )
    assert len(trigger) == 2 and trigger[1].endswith("END;")


def test_migration_sections_and_types_follow_the_dialect() -> None:
    text = (
        "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, x INTEGER, b BLOB, r REAL);\n"
        "-- dialect: sqlite\nCREATE TRIGGER t;\n-- dialect: postgresql\nCREATE FUNCTION f;\n"
        "-- dialect: all\nCREATE INDEX i ON a (x);\n"
    )
    lite, pg = for_dialect(text, "sqlite"), for_dialect(text, "postgresql")
    assert "CREATE TRIGGER t" in lite and "FUNCTION" not in lite and "INTEGER, b BLOB" in lite
    assert "CREATE FUNCTION f" in pg and "TRIGGER" not in pg and "CREATE INDEX i" in pg
    assert "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, x BIGINT, b BYTEA" in pg
    assert "r DOUBLE PRECISION" in pg


async def _open_and_close(path: Path) -> None:
    async with open_database(path) as db:
        assert await db.scalar("SELECT max(version) FROM schema_version") == len(migrations())


def test_database_is_migrated_once_and_newer_schemas_are_refused(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "db.sqlite"
    asyncio.run(_open_and_close(path))
    asyncio.run(_open_and_close(path))  # reopening applies nothing twice
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
        conn.execute("INSERT INTO schema_version VALUES (999)")
    conn.close()
    assert versions == list(range(1, len(migrations()) + 1))
    with pytest.raises(StoreError, match="newer than this coordinator"):
        asyncio.run(_open_and_close(path))


def test_the_address_pattern_is_exactly_the_32_byte_keys() -> None:
    """The document's address pattern against the decoder, on keys and on near misses."""
    pattern = re.compile(key_address_pattern())
    rng = random.Random(17)
    for _ in range(3000):
        key = bytes([rng.randrange(1, 256)]) + rng.randbytes(31)
        assert pattern.fullmatch(address_of(key)), key.hex()
    for _ in range(3000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.choice((42, 43, 44, 45))))
        try:
            decodes = len(public_key_of_address(text)) == 32 and not text.startswith("1")
        except SignatureError:
            decodes = False
        assert (pattern.fullmatch(text) is not None) == decodes, text
    for edge in (b"\x01" + b"\x00" * 31, b"\xff" * 32):
        assert pattern.fullmatch(address_of(edge))
