"""Byte layouts the chain layer reads itself: SPL token accounts and mints, the Clock sysvar."""

from __future__ import annotations

from solders.account import Account
from solders.pubkey import Pubkey
from spl.token.constants import ACCOUNT_LEN, MINT_LEN, TOKEN_PROGRAM_ID

TOKEN_AMOUNT_OFFSET = 64
TOKEN_MINT_OFFSET = 0
MINT_DECIMALS_OFFSET = 44
MINT_INITIALIZED_OFFSET = 45
TOKEN_STATE_OFFSET = 108
CLOCK_UNIX_TIMESTAMP_OFFSET = 32
CLOCK_LEN = 40


def is_token_account(account: Account | None) -> bool:
    """An initialized SPL Token account (not a mint, not another program's data)."""
    return (
        account is not None
        and account.owner == TOKEN_PROGRAM_ID
        and len(account.data) == ACCOUNT_LEN
        and account.data[TOKEN_STATE_OFFSET] != 0
    )


def token_amount(data: bytes) -> int:
    """The ``amount`` of an SPL token account (u64 LE at offset 64)."""
    return int.from_bytes(data[TOKEN_AMOUNT_OFFSET : TOKEN_AMOUNT_OFFSET + 8], "little")


def token_mint(data: bytes) -> Pubkey:
    return Pubkey.from_bytes(data[TOKEN_MINT_OFFSET : TOKEN_MINT_OFFSET + 32])


def is_mint(account: Account | None) -> bool:
    return (
        account is not None
        and account.owner == TOKEN_PROGRAM_ID
        and len(account.data) == MINT_LEN
        and account.data[MINT_INITIALIZED_OFFSET] != 0
    )


def mint_decimals(data: bytes) -> int:
    return data[MINT_DECIMALS_OFFSET]


def clock_unix_timestamp(data: bytes) -> int:
    """``unix_timestamp`` (i64 LE) of the Clock sysvar's account data."""
    if len(data) < CLOCK_LEN:
        raise ValueError(f"clock sysvar data of {len(data)} bytes, expected {CLOCK_LEN}")
    raw = data[CLOCK_UNIX_TIMESTAMP_OFFSET : CLOCK_UNIX_TIMESTAMP_OFFSET + 8]
    return int.from_bytes(raw, "little", signed=True)
