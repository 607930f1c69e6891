"""Canonical encoding: round trips, strict decoding, fuzzing to typed errors only."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from dgpu.protocol import DecodeError, MessageTooLarge, decode, decode_as, encode
from dgpu.protocol.messages import MAX_MESSAGE_BYTES, Message, Offer, Receipt
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol.strategies import any_message, offers


@given(any_message)
def test_every_message_round_trips_canonically(message: Message) -> None:
    data = encode(message)
    back = decode(data)
    assert back == message
    assert type(back) is type(message)
    assert encode(back) == data


@given(offers)
def test_decode_as_refuses_another_kind(offer: Offer) -> None:
    with pytest.raises(DecodeError):
        decode_as(Receipt, encode(offer))


@given(any_message, st.data())
@settings(max_examples=300)
def test_mutated_bytes_give_typed_errors_or_valid_messages(
    message: Message, data: st.DataObject
) -> None:
    raw = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        back = decode(bytes(raw))
    except DecodeError:
        return
    assert encode(back) == bytes(raw)  # anything accepted is canonical


@given(st.binary(max_size=512))
@settings(max_examples=500)
def test_random_bytes_give_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(raw)


def test_size_cap_is_checked_before_parsing() -> None:
    with pytest.raises(MessageTooLarge) as info:
        decode(b"\xc1" * (MAX_MESSAGE_BYTES + 1))
    assert info.value.size == MAX_MESSAGE_BYTES + 1


def _offer_dict() -> dict[str, object]:
    offer = Offer(
        provider=bytes(32),
        offer_id=bytes(16),
        gpu_model="H100",
        gpu_count=1,
        vram_mb=81920,
        simulated=True,
        price_per_gpu_second=1,
        mint=bytes(32),
        region="eu",
        max_duration_s=60,
        multiaddrs=[],
        created_at=0,
        expires_at=1,
    )
    raw = msgspec.msgpack.decode(encode(offer))
    assert isinstance(raw, dict)
    return raw


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gpu_count", 0),
        ("gpu_count", 65),
        ("price_per_gpu_second", -1),
        ("price_per_gpu_second", 1.5),
        ("provider", b"short"),
        ("gpu_model", "H100; rm -rf"),
        ("region", "EU WEST"),
        ("v", 2),
        ("multiaddrs", ["no-slash"]),
        ("simulated", "yes"),
        # "$" in a searched pattern also matches before a final newline: anchored with \Z
        ("gpu_model", "H100\n"),
        ("region", "eu-west\n"),
        ("multiaddrs", ["/ip4/127.0.0.1/tcp/1\n"]),
        ("multiaddrs", ["/ip4/127.0.0.1/tcp/1\x00"]),
        ("multiaddrs", ["/dns4/<script>alert(1)</script>/tcp/1"]),
        ("multiaddrs", ["/ip4/1.2.3.4/tcp/1 /ip4/5.6.7.8"]),
    ],
)
def test_invalid_field_is_named(field: str, value: object) -> None:
    raw = _offer_dict()
    raw[field] = value
    with pytest.raises(DecodeError) as info:
        decode(msgspec.msgpack.encode(raw))
    assert info.value.field is not None
    assert info.value.field.startswith(field)


def test_unknown_field_is_refused() -> None:
    raw = _offer_dict()
    raw["extra"] = 1
    with pytest.raises(DecodeError, match="extra"):
        decode(msgspec.msgpack.encode(raw))


def test_non_canonical_order_is_refused() -> None:
    raw = _offer_dict()
    reordered = dict(reversed(list(raw.items())))
    reordered = {"type": raw["type"], **{k: v for k, v in reordered.items() if k != "type"}}
    with pytest.raises(DecodeError, match="canonical"):
        decode(msgspec.msgpack.encode(reordered))


def test_missing_field_is_named() -> None:
    raw = _offer_dict()
    del raw["mint"]
    with pytest.raises(DecodeError, match="mint"):
        decode(msgspec.msgpack.encode(raw))


def test_unknown_kind_is_refused() -> None:
    raw = _offer_dict()
    raw["type"] = "launch_missiles"
    with pytest.raises(DecodeError):
        decode(msgspec.msgpack.encode(raw))


def test_deep_nesting_is_a_typed_error() -> None:
    with pytest.raises(DecodeError):
        decode(b"\x91" * 10_000 + b"\xc0")


def test_real_multiaddrs_pass() -> None:
    raw = _offer_dict()
    raw["multiaddrs"] = [
        "/ip4/198.18.0.7/tcp/4001/p2p/12D3KooWCbpfAzgVBGLPMaKC6KwcsjDqKdctBYZpDx4z9gtjbGb1",
        "/ip6/::1/tcp/4001",
        "/dns4/provider.example.org/tcp/4001",
        "/ip4/203.0.113.5/tcp/4001/p2p/12D3KooWCbpfAzgVBGLPMaKC6KwcsjDqKdctBYZpDx4z9gtjbGb1"
        "/p2p-circuit/p2p/12D3KooWCbpfAzgVBGLPMaKC6KwcsjDqKdctBYZpDx4z9gtjbGb1",
    ]
    offer = decode(msgspec.msgpack.encode(raw))
    assert isinstance(offer, Offer)
    assert len(offer.multiaddrs) == 4
