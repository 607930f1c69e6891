"""Address lookup tables (ALTs) for settlement transactions.

A v0 transaction names an account by a one-byte index into a table instead of its 32-byte
address, which is what lets a settlement batch carry more receipts. The batcher keeps a
table holding the fixed accounts (instructions sysvar, token program) and the
(channel, vault, provider token) triples it settles; these builders create and extend it
(bincode ``ProgramInstruction`` of the Address Lookup Table program).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID

LOOKUP_TABLE_PROGRAM_ID: Final = Pubkey.from_string("AddressLookupTab1e1111111111111111111111111")
MAX_ADDRESSES: Final = 256
# Extending by more than about 30 addresses at once overflows a transaction.
MAX_EXTEND: Final = 30
_CREATE, _EXTEND = 0, 2


def lookup_table_address(authority: Pubkey, recent_slot: int) -> Pubkey:
    seeds = [bytes(authority), recent_slot.to_bytes(8, "little")]
    return Pubkey.find_program_address(seeds, LOOKUP_TABLE_PROGRAM_ID)[0]


def create_lookup_table(
    authority: Pubkey, payer: Pubkey, recent_slot: int
) -> tuple[Instruction, Pubkey]:
    """The create instruction and the table's address; ``recent_slot`` must be a recent
    slot of the cluster (in its SlotHashes)."""
    table, bump = Pubkey.find_program_address(
        [bytes(authority), recent_slot.to_bytes(8, "little")], LOOKUP_TABLE_PROGRAM_ID
    )
    data = struct.pack("<IQB", _CREATE, recent_slot, bump)
    accounts = [
        AccountMeta(table, is_signer=False, is_writable=True),
        AccountMeta(authority, is_signer=True, is_writable=False),
        AccountMeta(payer, is_signer=True, is_writable=True),
        AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
    ]
    return Instruction(LOOKUP_TABLE_PROGRAM_ID, data, accounts), table


def extend_lookup_table(
    table: Pubkey, authority: Pubkey, payer: Pubkey, addresses: Sequence[Pubkey]
) -> Instruction:
    """Append ``addresses`` (usable from the next slot on)."""
    if not 1 <= len(addresses) <= MAX_EXTEND:
        raise ValueError(f"extend by 1 to {MAX_EXTEND} addresses, not {len(addresses)}")
    data = struct.pack("<IQ", _EXTEND, len(addresses)) + b"".join(bytes(a) for a in addresses)
    accounts = [
        AccountMeta(table, is_signer=False, is_writable=True),
        AccountMeta(authority, is_signer=True, is_writable=False),
        AccountMeta(payer, is_signer=True, is_writable=True),
        AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
    ]
    return Instruction(LOOKUP_TABLE_PROGRAM_ID, data, accounts)


META_SIZE: Final = 56  # u32 state tag + LookupTableMeta, before the address list


def decode_lookup_table(table: Pubkey, data: bytes) -> AddressLookupTableAccount:
    """The table's addresses from its account data (ValueError if it is not a table)."""
    if len(data) < META_SIZE or struct.unpack_from("<I", data)[0] != 1:
        raise ValueError(f"{table} is not an initialized address lookup table")
    body = data[META_SIZE:]
    if len(body) % 32:
        raise ValueError(f"{table}: address list of {len(body)} bytes")
    addresses = [Pubkey.from_bytes(body[i : i + 32]) for i in range(0, len(body), 32)]
    return AddressLookupTableAccount(table, addresses)


def encode_lookup_table(addresses: Sequence[Pubkey], authority: Pubkey | None = None) -> bytes:
    """Account data of an active, never-deactivated table (for local chains and tests)."""
    meta = struct.pack("<IQQB", 1, 2**64 - 1, 0, 0)
    meta += (b"\x01" + bytes(authority)) if authority is not None else bytes(33)
    meta += bytes(2)
    return meta + b"".join(bytes(a) for a in addresses)
