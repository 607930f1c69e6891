"""The receipt a renter signs: a fixed little-endian byte layout parsed on chain.

Layout (64 bytes; mirrored in ``contracts/escrow.c`` and pinned by the golden vectors in
``tests/vectors/receipts.json``)::

    offset  size  field
         0    16  tag          b"dgpu/v1/receipt\\0" (domain separation)
        16    32  channel      the channel account's address
        48     8  open_nonce   u64 LE, the nonce the channel was opened with
        56     8  cumulative   u64 LE, total owed to the provider so far (base units)

The renter's ed25519 signature covers these 64 bytes exactly as they are (the Ed25519
precompile checks the same bytes on chain), so the tag lives inside the layout.

The receipt is bound to one escrow program through the channel address: a channel is a
program-derived address of the program (off the ed25519 curve, so no other program can
own an account there), and the program checks that the channel account it settles is its
own. The program id is therefore not repeated in the signed bytes — it would cost 32
bytes per receipt in every settlement transaction, and 5 receipts per transaction fit
only without it. :class:`ReceiptBody` still carries ``program_id`` so that nodes check a
receipt against the program they expect.

A receipt is cumulative: settling it pays ``cumulative - already_paid`` and nothing when
that is not positive.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import nacl.exceptions
import nacl.signing
from dgpu.protocol.errors import DecodeError, SignatureError
from dgpu.protocol.identity import PUBLIC_KEY_LEN, SIGNATURE_LEN, Identity, address_of

RECEIPT_TAG: Final = b"dgpu/v1/receipt\0"
RECEIPT_LEN: Final = 64
U64_MAX: Final = 2**64 - 1
_LAYOUT: Final = struct.Struct("<16s32sQQ")
assert _LAYOUT.size == RECEIPT_LEN


@dataclass(frozen=True)
class ReceiptBody:
    """The fields a receipt binds."""

    program_id: bytes
    channel: bytes
    open_nonce: int
    cumulative: int

    def __post_init__(self) -> None:
        for name in ("program_id", "channel"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_LEN:
                raise DecodeError(f"must be {PUBLIC_KEY_LEN} bytes", field=name)
        for name in ("open_nonce", "cumulative"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
                raise DecodeError("must be an integer in [0, 2**64)", field=name)

    def to_bytes(self) -> bytes:
        return _LAYOUT.pack(RECEIPT_TAG, self.channel, self.open_nonce, self.cumulative)

    @classmethod
    def from_bytes(cls, data: bytes, *, program_id: bytes) -> ReceiptBody:
        """Parse signed receipt bytes of a channel of ``program_id``."""
        if len(data) != RECEIPT_LEN:
            raise DecodeError(f"receipt must be {RECEIPT_LEN} bytes, got {len(data)}")
        tag, channel, nonce, cumulative = _LAYOUT.unpack(data)
        if tag != RECEIPT_TAG:
            raise DecodeError("not a dgpu v1 receipt", field="tag")
        return cls(program_id, channel, nonce, cumulative)

    def sign(self, renter: Identity) -> bytes:
        return renter.sign_raw(self.to_bytes())

    def verify(self, renter_public_key: bytes, signature: bytes) -> None:
        if len(signature) != SIGNATURE_LEN:
            raise SignatureError(f"signature must be {SIGNATURE_LEN} bytes, got {len(signature)}")
        try:
            nacl.signing.VerifyKey(renter_public_key).verify(self.to_bytes(), signature)
        except nacl.exceptions.BadSignatureError as exc:
            raise SignatureError(
                f"bad receipt signature by {address_of(renter_public_key)}"
            ) from exc
        except (nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
            raise SignatureError("invalid renter public key") from exc
