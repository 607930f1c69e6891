"""Domain-separated signatures, receipts and their golden vectors, offer validity."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest
from dgpu.protocol import (
    Identity,
    OfferExpired,
    OfferNotYetValid,
    OfferTerms,
    ReceiptBody,
    SignatureError,
    make_offer,
    parse_offer,
)
from dgpu.protocol.errors import DecodeError, OfferError
from dgpu.protocol.messages import Cancel, Offer, UsageReport
from dgpu.protocol.offers import MAX_OFFER_BYTES, offer_bytes
from dgpu.protocol.signing import sign, signing_payload, verify
from hypothesis import given
from hypothesis import strategies as st

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "receipts.json").read_text())
PROVIDER = Identity.from_label("provider")
TERMS = OfferTerms("H100", 2, 81920, 833_334, bytes(32), "eu-west", 3600, simulated=True)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_receipt_golden_vectors(vector: dict[str, object]) -> None:
    body = ReceiptBody(
        bytes.fromhex(str(vector["program_id_hex"])),
        bytes.fromhex(str(vector["channel_hex"])),
        int(str(vector["open_nonce"])),
        int(str(vector["cumulative"])),
    )
    renter = Identity(bytes.fromhex(str(vector["seed_hex"])))
    assert renter.public_key.hex() == vector["public_key_hex"]
    assert body.to_bytes().hex() == vector["message_hex"]
    assert body.sign(renter).hex() == vector["signature_hex"]
    body.verify(renter.public_key, bytes.fromhex(str(vector["signature_hex"])))
    assert ReceiptBody.from_bytes(body.to_bytes(), program_id=body.program_id) == body


def test_receipt_tampering_detected() -> None:
    renter = Identity.from_label("renter")
    body = ReceiptBody(bytes(32), b"\x01" * 32, 1, 100)
    signature = body.sign(renter)
    for tampered in (
        ReceiptBody(bytes(32), b"\x01" * 32, 1, 101),
        ReceiptBody(bytes(32), b"\x01" * 32, 2, 100),
        ReceiptBody(bytes(32), b"\x02" * 32, 1, 100),
    ):
        with pytest.raises(SignatureError):
            tampered.verify(renter.public_key, signature)
    with pytest.raises(SignatureError):
        body.verify(Identity.from_label("other").public_key, signature)


def test_receipt_layout_refuses_bad_input() -> None:
    with pytest.raises(DecodeError):
        ReceiptBody.from_bytes(b"\x00" * 63, program_id=bytes(32))
    with pytest.raises(DecodeError, match="tag"):
        ReceiptBody.from_bytes(b"\x00" * 64, program_id=bytes(32))
    with pytest.raises(DecodeError, match="cumulative"):
        ReceiptBody(bytes(32), bytes(32), 0, -1)
    with pytest.raises(DecodeError, match="channel"):
        ReceiptBody(bytes(32), bytes(31), 0, 1)


def test_signature_of_one_kind_is_not_valid_as_another() -> None:
    cancel = sign(Cancel(job_id=bytes(16)), PROVIDER)
    report = UsageReport(job_id=bytes(16), seq=1, elapsed_s=1, amount_due=1, at=1)
    forged = msgspec.structs.replace(report, sig=cancel.sig)
    with pytest.raises(SignatureError):
        verify(forged, PROVIDER.public_key)
    # the same payload under another tag gives another signature
    assert PROVIDER.sign("cancel", b"x") != PROVIDER.sign("usage_report", b"x")


@given(st.integers(0, 2**40), st.integers(1, 2**30))
def test_tampered_signed_messages_rejected(now: int, price: int) -> None:
    offer = make_offer(PROVIDER, TERMS, multiaddrs=[], now=now, ttl_s=60)
    verify(offer, PROVIDER.public_key)
    tampered = msgspec.structs.replace(
        offer, price_per_gpu_second=offer.price_per_gpu_second + price
    )
    with pytest.raises(SignatureError):
        verify(tampered, PROVIDER.public_key)
    with pytest.raises(SignatureError):
        verify(offer, Identity.from_label("someone else").public_key)


def test_unsigned_message_refused() -> None:
    offer = msgspec.structs.replace(
        make_offer(PROVIDER, TERMS, multiaddrs=[], now=10, ttl_s=60), sig=b""
    )
    with pytest.raises(SignatureError, match="not signed"):
        verify(offer, PROVIDER.public_key)
    assert signing_payload(offer) == signing_payload(
        make_offer(PROVIDER, TERMS, multiaddrs=[], now=10, ttl_s=60, offer_id=offer.offer_id)
    )


def test_offer_time_window() -> None:
    offer = make_offer(PROVIDER, TERMS, multiaddrs=["/ip4/127.0.0.1/tcp/4001"], now=1000, ttl_s=120)
    assert parse_offer(offer_bytes(offer), now=1000) == offer
    with pytest.raises(OfferExpired):
        parse_offer(offer_bytes(offer), now=1120)
    with pytest.raises(OfferNotYetValid):
        parse_offer(offer_bytes(offer), now=900)
    too_long = make_offer(PROVIDER, TERMS, multiaddrs=[], now=1000, ttl_s=100_000)
    with pytest.raises(OfferError, match="lifetime"):
        parse_offer(offer_bytes(too_long), now=1000)


def test_offer_signed_by_someone_else_refused() -> None:
    offer = make_offer(PROVIDER, TERMS, multiaddrs=[], now=1000, ttl_s=60)
    impostor = msgspec.structs.replace(offer, provider=Identity.from_label("x").public_key)
    with pytest.raises(SignatureError):
        parse_offer(offer_bytes(impostor), now=1000)


def test_oversized_offer_refused_before_decoding() -> None:
    from dgpu.protocol import MessageTooLarge

    with pytest.raises(MessageTooLarge):
        parse_offer(b"\x00" * (MAX_OFFER_BYTES + 1), now=0)
    assert isinstance(Offer, type)


AMD_TERMS = OfferTerms(
    "MI300X",
    2,
    196592,
    900_000,
    bytes(32),
    "eu-west",
    3600,
    simulated=False,
    power_w=750,
    gpu_vendor="amd",
    gpu_name="AMD Instinct MI300X",
    driver_version="6.10.5",
    gpu_uuids=("4cff73bf-0000-1000-80e9-b0e7f4b9b2f5", "61ff744c-0000-1000-8011-6f4e1c2d9a10"),
)


def test_offer_carries_what_the_backend_read_signed() -> None:
    offer = make_offer(PROVIDER, AMD_TERMS, multiaddrs=[], now=1000, ttl_s=60)
    parsed = parse_offer(offer_bytes(offer), now=1000)
    assert (parsed.gpu_vendor, parsed.gpu_name, parsed.driver_version) == (
        "amd",
        "AMD Instinct MI300X",
        "6.10.5",
    )
    assert parsed.gpu_uuids == list(AMD_TERMS.gpu_uuids)
    assert parsed.executor == "docker"
    # each of them is covered by the provider's signature
    for change in (
        {"gpu_vendor": "nvidia"},
        {"gpu_name": "AMD Instinct MI325X"},
        {"driver_version": "6.10.6"},
        {"gpu_uuids": list(reversed(AMD_TERMS.gpu_uuids))},
        {"executor": "local"},
    ):
        with pytest.raises(SignatureError):
            verify(msgspec.structs.replace(offer, **change), PROVIDER.public_key)


def test_a_full_offer_fits_the_cap() -> None:
    """8 longest multiaddrs and 64 longest board UUIDs still make a valid offer."""
    terms = OfferTerms(
        "H100", 64, 81920, 1, bytes(32), "r" * 32, 3600, simulated=False,
        gpu_vendor="nvidia", gpu_name="N" * 96, driver_version="9" * 96,
        gpu_uuids=tuple(f"{i:064d}" for i in range(64)), executor="local",
    )  # fmt: skip
    offer = make_offer(PROVIDER, terms, multiaddrs=["/" + "a" * 255] * 8, now=5, ttl_s=60)
    assert len(offer_bytes(offer)) <= MAX_OFFER_BYTES
    assert parse_offer(offer_bytes(offer), now=5) == offer


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"gpu_uuids": ["GPU-only-one"]}, "gpu_uuids: 1 UUIDs for 2 GPUs"),
        ({"gpu_name": "MI300X\x1b[31m"}, "gpu_name"),
        ({"driver_version": "6.10\n5"}, "driver_version"),
        ({"gpu_uuids": ["GPU a", "GPU-b"]}, "gpu_uuids"),
        ({"gpu_vendor": "intel"}, "gpu_vendor"),
        ({"executor": "vm"}, "executor"),
    ],
)
def test_bad_backend_facts_are_refused(change: dict[str, object], words: str) -> None:
    offer = make_offer(PROVIDER, AMD_TERMS, multiaddrs=[], now=1000, ttl_s=60)
    raw = msgspec.msgpack.decode(offer_bytes(offer))
    raw.update(change)
    with pytest.raises(DecodeError, match=re.escape(words)):
        parse_offer(msgspec.msgpack.encode(raw), now=1000)
