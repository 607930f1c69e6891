"""Ed25519 precompile instructions for one or many signed messages (receipts).

Layout of the precompile's data::

    u8 count | u8 padding | count x Ed25519SignatureOffsets (7 x u16 LE) | payloads

Each payload is ``public key (32) | signature (64) | message`` (a key repeated by later
items is stored once and pointed at again); every offset names this
same instruction (index ``0xFFFF``), which is what the escrow's ``settle`` accepts: the
runtime verifies exactly the bytes the program then reads.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dgpu.protocol.identity import PUBLIC_KEY_LEN, SIGNATURE_LEN
from dgpu.protocol.receipt import ReceiptBody
from solders.instruction import Instruction
from solders.pubkey import Pubkey

ED25519_PROGRAM_ID: Final = Pubkey.from_string("Ed25519SigVerify111111111111111111111111111")
SAME_INSTRUCTION: Final = 0xFFFF
HEADER_LEN: Final = 2
_OFFSETS: Final = struct.Struct("<7H")
OFFSETS_LEN: Final = _OFFSETS.size
MAX_DATA_LEN: Final = 0xFFFF


@dataclass(frozen=True)
class SignedMessage:
    """An ed25519 signature with the key and message it is checked against."""

    public_key: bytes
    signature: bytes
    message: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != PUBLIC_KEY_LEN:
            raise ValueError(f"public key must be {PUBLIC_KEY_LEN} bytes")
        if len(self.signature) != SIGNATURE_LEN:
            raise ValueError(f"signature must be {SIGNATURE_LEN} bytes")

    @classmethod
    def receipt(cls, body: ReceiptBody, signature: bytes, renter: Pubkey) -> SignedMessage:
        return cls(bytes(renter), signature, body.to_bytes())


@dataclass(frozen=True)
class SignatureOffsets:
    """One ``Ed25519SignatureOffsets`` entry."""

    signature_offset: int
    signature_instruction_index: int
    public_key_offset: int
    public_key_instruction_index: int
    message_data_offset: int
    message_data_size: int
    message_instruction_index: int

    def pack(self) -> bytes:
        return _OFFSETS.pack(
            self.signature_offset,
            self.signature_instruction_index,
            self.public_key_offset,
            self.public_key_instruction_index,
            self.message_data_offset,
            self.message_data_size,
            self.message_instruction_index,
        )

    @classmethod
    def unpack(cls, data: bytes) -> SignatureOffsets:
        return cls(*_OFFSETS.unpack(data))


def ed25519_data(items: Sequence[SignedMessage]) -> bytes:
    """The precompile's instruction data verifying every item."""
    if not 1 <= len(items) <= 255:
        raise ValueError(f"the precompile takes 1 to 255 signatures, got {len(items)}")
    offsets: list[bytes] = []
    payload = bytearray()
    keys: dict[bytes, int] = {}  # a key shared by several items is stored once
    base = HEADER_LEN + OFFSETS_LEN * len(items)
    for item in items:
        if item.public_key not in keys:
            keys[item.public_key] = base + len(payload)
            payload += item.public_key
        sig_at = base + len(payload)
        msg_at = sig_at + SIGNATURE_LEN
        payload += item.signature + item.message
        entry = SignatureOffsets(
            sig_at,
            SAME_INSTRUCTION,
            keys[item.public_key],
            SAME_INSTRUCTION,
            msg_at,
            len(item.message),
            SAME_INSTRUCTION,
        )
        offsets.append(entry.pack())
    at = base + len(payload)
    if at > MAX_DATA_LEN:
        raise ValueError(f"{at} bytes of precompile data exceed {MAX_DATA_LEN}")
    return bytes([len(items), 0]) + b"".join(offsets) + bytes(payload)


def ed25519_instruction(items: Sequence[SignedMessage]) -> Instruction:
    """One Ed25519 precompile instruction (no accounts) verifying all ``items``."""
    return Instruction(ED25519_PROGRAM_ID, ed25519_data(items), [])


def parse_offsets(data: bytes) -> list[SignatureOffsets]:
    """The offsets table of precompile data (for inspection and tests)."""
    if len(data) < HEADER_LEN:
        raise ValueError("precompile data shorter than its header")
    count = data[0]
    end = HEADER_LEN + OFFSETS_LEN * count
    if len(data) < end:
        raise ValueError(f"precompile data too short for {count} offsets")
    return [
        SignatureOffsets.unpack(data[at : at + OFFSETS_LEN])
        for at in range(HEADER_LEN, end, OFFSETS_LEN)
    ]
