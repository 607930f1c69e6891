"""Signatures over messages: per-kind domain tags, canonical bytes, typed failures.

``sign(msg, identity)`` returns a copy of ``msg`` with ``sig`` set; the signed payload is
the canonical encoding of the message with ``sig`` empty, prefixed by the tag of its kind
(``dgpu/v1/offer\\0``...). ``verify(msg, public_key)`` raises
:class:`~dgpu.protocol.errors.SignatureError`. Receipts are signed over their fixed byte
layout instead (:mod:`dgpu.protocol.receipt`), and Agreements over the terms hash.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

import msgspec
from dgpu.protocol import identity as ident
from dgpu.protocol.codec import encode
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.messages import (
    Agreement,
    Cancel,
    ChannelOpened,
    JobRequest,
    Message,
    Offer,
    OutputManifest,
    ProbeVerdict,
    Quote,
    Receipt,
    UsageReport,
)
from dgpu.protocol.receipt import ReceiptBody

M = TypeVar("M", bound=Message)

# Kinds signed with sign()/verify(); tags are "dgpu/v1/<kind>\0".
SIGNED_KINDS: dict[type[Message], str] = {
    Offer: "offer",
    JobRequest: "job_request",
    Quote: "quote",
    ChannelOpened: "channel_opened",
    UsageReport: "usage_report",
    Cancel: "cancel",
    OutputManifest: "output_manifest",
    ProbeVerdict: "probe_verdict",
}
AGREEMENT_KIND = "agreement"


def signing_payload(message: Message) -> bytes:
    return encode(msgspec.structs.replace(message, sig=b""))


def _kind(message: Message) -> str:
    try:
        return SIGNED_KINDS[type(message)]
    except KeyError:
        raise TypeError(f"{type(message).__name__} is not signed with sign()") from None


def sign(message: M, signer: ident.Identity) -> M:
    signature = signer.sign(_kind(message), signing_payload(message))
    return msgspec.structs.replace(message, sig=signature)


def verify(message: Message, public_key: bytes) -> None:
    signature = getattr(message, "sig", b"")
    if not signature:
        raise SignatureError(f"{type(message).__name__} is not signed")
    ident.verify(public_key, _kind(message), signing_payload(message), signature)


def message_hash(message: Message) -> bytes:
    """sha256 of a message's full canonical bytes (signature included)."""
    return hashlib.sha256(encode(message)).digest()


def terms_hash(quote: Quote) -> bytes:
    """The hash both parties sign in the Agreement: the signed quote's canonical bytes."""
    return message_hash(quote)


def sign_agreement(agreement: Agreement, signer: ident.Identity, *, as_provider: bool) -> Agreement:
    signature = signer.sign(AGREEMENT_KIND, agreement.job_id + agreement.terms_hash)
    if as_provider:
        return msgspec.structs.replace(agreement, provider_sig=signature)
    return msgspec.structs.replace(agreement, renter_sig=signature)


def verify_agreement(agreement: Agreement, quote: Quote, *, both: bool = True) -> None:
    """Check the agreement binds ``quote`` and carries the renter's (and provider's) signature."""
    if agreement.job_id != quote.job_id:
        raise SignatureError("agreement is for another job")
    if agreement.terms_hash != terms_hash(quote):
        raise SignatureError("agreement terms hash does not match the quote")
    payload = agreement.job_id + agreement.terms_hash
    ident.verify(quote.renter, AGREEMENT_KIND, payload, agreement.renter_sig)
    if both:
        ident.verify(quote.provider, AGREEMENT_KIND, payload, agreement.provider_sig)


def receipt_body(receipt: Receipt) -> ReceiptBody:
    return ReceiptBody(receipt.program_id, receipt.channel, receipt.open_nonce, receipt.cumulative)


def sign_receipt(receipt: Receipt, renter: ident.Identity) -> Receipt:
    if renter.public_key != receipt.renter:
        raise SignatureError("receipt names another renter than the signer")
    return msgspec.structs.replace(receipt, sig=receipt_body(receipt).sign(renter))


def verify_receipt(receipt: Receipt) -> None:
    receipt_body(receipt).verify(receipt.renter, receipt.sig)
