"""Frames and offer records, without any transport."""

from __future__ import annotations

import pytest
from dgpu.node.net.errors import FrameError, FrameTooLarge
from dgpu.node.net.framing import FrameReader, encode_frame, encode_uvarint, prefix_limit
from dgpu.node.net.libp2p.validator import OfferRecordValidator
from dgpu.node.net.records import (
    check_offer_record,
    newest_per_provider,
    offer_key,
    select_newest,
)
from dgpu.protocol import Identity, MessageTooLarge, OfferError, SignatureError
from dgpu.protocol.errors import DecodeError, OfferExpired
from dgpu.protocol.offers import MAX_OFFER_BYTES, offer_bytes
from hypothesis import given
from hypothesis import strategies as st

from tests.node.net.helpers import forged, offer_of

ALICE, BOB = Identity.from_label("alice"), Identity.from_label("bob")
NOW = 1_700_000_000


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20), st.integers(1, 64))
def test_frames_survive_any_chunking(payloads: list[bytes], chunk: int) -> None:
    wire = b"".join(encode_frame(p) for p in payloads)
    reader = FrameReader(max_frame=300)
    out = []
    for start in range(0, len(wire), chunk):
        reader.feed(wire[start : start + chunk])
        while (payload := reader.next_frame()) is not None:
            out.append(payload)
    assert out == payloads
    assert reader.buffered == 0


@given(st.integers(0, 2**63))
def test_uvarint_prefix_is_refused_as_soon_as_it_is_too_long(length: int) -> None:
    reader = FrameReader(max_frame=64 * 1024)
    reader.feed(encode_uvarint(length))
    if length == 0:
        with pytest.raises(FrameError):
            reader.next_frame()
    elif length > 64 * 1024:
        with pytest.raises(FrameTooLarge):
            reader.next_frame()
    else:
        assert reader.next_frame() is None  # waits for the body


def test_an_endless_prefix_is_refused_after_its_few_bytes() -> None:
    reader = FrameReader(max_frame=64 * 1024)
    assert prefix_limit(64 * 1024) == 3
    reader.feed(b"\x80\x80\x80")
    with pytest.raises(FrameTooLarge):
        reader.next_frame()


def test_a_valid_record_checks_out() -> None:
    offer = offer_of(ALICE, now=NOW)
    assert check_offer_record(offer_key(ALICE.peer_id), offer_bytes(offer), now=NOW) == offer


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        (
            offer_key(ALICE.peer_id),
            offer_bytes(forged(offer_of(BOB, now=NOW), ALICE)),
            SignatureError,
        ),
        (offer_key(ALICE.peer_id), offer_bytes(offer_of(ALICE, now=NOW - 400)), OfferExpired),
        (offer_key(BOB.peer_id), offer_bytes(offer_of(ALICE, now=NOW)), OfferError),
        (offer_key(ALICE.peer_id), b"\x00" * (MAX_OFFER_BYTES + 1), MessageTooLarge),
        (offer_key(ALICE.peer_id), b"\x81\xa1x\x01", DecodeError),
        ("/dgpu/gpu/H100", offer_bytes(offer_of(ALICE, now=NOW)), OfferError),
    ],
    ids=["forged", "expired", "other-signer", "oversized", "garbage", "not-an-offer-key"],
)
def test_bad_records_are_refused(key: str, value: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_offer_record(key, value, now=NOW)
    with pytest.raises(ValueError, match="invalid dgpu record"):
        OfferRecordValidator(clock=lambda: NOW).validate(key, value)


def test_the_newest_valid_value_wins() -> None:
    key = offer_key(ALICE.peer_id)
    old, new = offer_of(ALICE, now=NOW - 10), offer_of(ALICE, now=NOW)
    bad = offer_bytes(forged(offer_of(BOB, now=NOW + 5), ALICE))
    values = [offer_bytes(old), bad, offer_bytes(new)]
    assert select_newest(key, values, now=NOW) == 2
    assert OfferRecordValidator(clock=lambda: NOW).select(key, values) == 2
    assert newest_per_provider([old, offer_of(BOB, now=NOW), new]) == [new, offer_of(BOB, now=NOW)]
