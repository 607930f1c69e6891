"""A program as the upgradeable loader (v3) leaves it, written directly: the test fixture.

``LiteSVM.add_program`` creates a loader-v2 program, which has no ProgramData account, so
the escrow's ``initialize`` (which reads the upgrade authority from ProgramData) cannot
succeed under it. :func:`install_upgradeable_program` writes the two accounts a
``solana program deploy`` would leave, with ``set_account`` and no transaction:

- ProgramData at the loader's PDA of ``[program id]``: ``u32 3 | u64 slot | Option<Pubkey>
  authority (1 + 32) | ELF``; a revoked authority is flag 0 (the key bytes stay: readers
  must test the flag first);
- Program at ``program id``: ``u32 2 | ProgramData address``, executable.

ProgramData first: LiteSVM loads the program when the Program account is written and
needs its ProgramData then. Real deploys (``dgpu chain deploy``) go through loader
transactions instead; both leave the same bytes.
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

from dgpu.contracts_client.pda import BPF_LOADER_UPGRADEABLE_ID, program_data_address
from solders.account import Account
from solders.pubkey import Pubkey

PROGRAM_TAG: Final = 2
PROGRAM_DATA_TAG: Final = 3
PROGRAM_DATA_META_LEN: Final = 45
"""ProgramData header before the ELF: tag (4) + slot (8) + authority option (1 + 32)."""


class AccountWriter(Protocol):
    """What the fixture needs of a LiteSVM (``solders.litesvm.LiteSVM`` has both)."""

    def set_account(self, address: Pubkey, account: Account) -> None: ...

    def minimum_balance_for_rent_exemption(self, data_len: int) -> int: ...


def program_data_bytes(
    elf: bytes, authority: Pubkey | None, *, slot: int = 0, revoked: bool = False
) -> bytes:
    """ProgramData contents; ``authority`` None = immutable. ``revoked``: the authority's
    flag is 0 but its key bytes stay, as the loader leaves them after ``--final``."""
    flag = b"\x00" if revoked or authority is None else b"\x01"
    option = flag + (bytes(32) if authority is None else bytes(authority))
    return struct.pack("<IQ", PROGRAM_DATA_TAG, slot) + option + elf


def program_bytes(program_id: Pubkey) -> bytes:
    """Program account contents: the tag and the ProgramData address."""
    return struct.pack("<I", PROGRAM_TAG) + bytes(program_data_address(program_id))


def install_upgradeable_program(
    svm: AccountWriter,
    program_id: Pubkey,
    elf: bytes,
    authority: Pubkey | None,
    *,
    slot: int = 0,
    revoked: bool = False,
) -> Pubkey:
    """Write ``elf`` as a loader-v3 program at ``program_id`` whose upgrade authority is
    ``authority`` (None, or ``revoked``: none); returns the ProgramData address. LiteSVM
    raises ``LiteSVMError`` (or panics) on an ELF it cannot load: callers convert that."""
    program_data = program_data_address(program_id)
    data = program_data_bytes(elf, authority, slot=slot, revoked=revoked)
    rent = svm.minimum_balance_for_rent_exemption(len(data))
    svm.set_account(program_data, Account(rent, data, BPF_LOADER_UPGRADEABLE_ID, False, 0))
    data = program_bytes(program_id)
    rent = svm.minimum_balance_for_rent_exemption(len(data))
    svm.set_account(program_id, Account(rent, data, BPF_LOADER_UPGRADEABLE_ID, True, 0))
    return program_data


def upgrade_authority_of(program_data: Account) -> Pubkey | None:
    """The upgrade authority recorded in a ProgramData account (None: revoked)."""
    data = bytes(program_data.data)
    if len(data) < PROGRAM_DATA_META_LEN or data[:4] != struct.pack("<I", PROGRAM_DATA_TAG):
        raise ValueError("not a ProgramData account")
    return Pubkey.from_bytes(data[13:45]) if data[12] == 1 else None
