"""Instruction builders of the escrow program (pure: no chain access).

Each returns a solders ``Instruction`` encoded through the IDL (:mod:`dgpu.contracts_client.idl`).
Token accounts default to associated token accounts. ``settle`` lives in
:mod:`dgpu.contracts_client.settlement` (it needs the Ed25519 precompile next to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from dgpu.contracts_client.idl import ChannelAccount, EscrowIdl, default_idl
from dgpu.contracts_client.pda import (
    associated_token_address,
    channel_address,
    config_address,
    vault_address,
)
from solders.instruction import Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from spl.token.constants import TOKEN_PROGRAM_ID

DEFAULT_FEE_BPS: Final = 500
DEFAULT_DISPUTE_WINDOW: Final = 24 * 3600
MAX_MINTS: Final = 4


def _config_args(
    *, settler: Pubkey, treasury: Pubkey, fee_bps: int, dispute_window: int, mints: Sequence[Pubkey]
) -> dict[str, object]:
    return {
        "settler": settler,
        "treasury": treasury,
        "fee_bps": fee_bps,
        "dispute_window": dispute_window,
        "mints": list(mints),
    }


def initialize_ix(
    admin: Pubkey,
    *,
    treasury: Pubkey,
    mints: Sequence[Pubkey],
    settler: Pubkey | None = None,
    fee_bps: int = DEFAULT_FEE_BPS,
    dispute_window: int = DEFAULT_DISPUTE_WINDOW,
    idl: EscrowIdl | None = None,
) -> Instruction:
    idl = idl or default_idl()
    args = _config_args(
        settler=settler or admin,
        treasury=treasury,
        fee_bps=fee_bps,
        dispute_window=dispute_window,
        mints=mints,
    )
    accounts = {
        "admin": admin,
        "config": config_address(idl.program_id),
        "system_program": SYSTEM_PROGRAM_ID,
    }
    return idl.instruction("initialize", args, accounts)


def update_config_ix(
    admin: Pubkey,
    *,
    new_admin: Pubkey,
    settler: Pubkey,
    treasury: Pubkey,
    fee_bps: int,
    dispute_window: int,
    mints: Sequence[Pubkey],
    idl: EscrowIdl | None = None,
) -> Instruction:
    idl = idl or default_idl()
    args: dict[str, object] = {"new_admin": new_admin}
    args |= _config_args(
        settler=settler,
        treasury=treasury,
        fee_bps=fee_bps,
        dispute_window=dispute_window,
        mints=mints,
    )
    accounts = {"admin": admin, "config": config_address(idl.program_id)}
    return idl.instruction("update_config", args, accounts)


def open_channel_ix(
    renter: Pubkey,
    *,
    provider: Pubkey,
    mint: Pubkey,
    channel_id: int,
    deposit: int,
    expiry: int,
    renter_token: Pubkey | None = None,
    idl: EscrowIdl | None = None,
) -> tuple[Instruction, Pubkey]:
    """The instruction and the channel's address."""
    idl = idl or default_idl()
    channel = channel_address(renter, provider, channel_id, idl.program_id)
    accounts = {
        "renter": renter,
        "provider": provider,
        "mint": mint,
        "config": config_address(idl.program_id),
        "channel": channel,
        "vault": vault_address(channel, idl.program_id),
        "renter_token": renter_token or associated_token_address(renter, mint),
        "token_program": TOKEN_PROGRAM_ID,
        "system_program": SYSTEM_PROGRAM_ID,
    }
    args = {"channel_id": channel_id, "deposit": deposit, "expiry": expiry}
    return idl.instruction("open_channel", args, accounts), channel


def top_up_ix(
    channel: ChannelAccount,
    amount: int,
    *,
    expiry: int | None = None,
    renter_token: Pubkey | None = None,
    idl: EscrowIdl | None = None,
) -> Instruction:
    """Add ``amount`` to the channel; ``expiry`` (default: unchanged) may only grow."""
    idl = idl or default_idl()
    accounts = {
        "renter": channel.renter,
        "channel": channel.address,
        "vault": channel.vault,
        "renter_token": renter_token or associated_token_address(channel.renter, channel.mint),
        "token_program": TOKEN_PROGRAM_ID,
    }
    args = {"amount": amount, "expiry": channel.expiry if expiry is None else expiry}
    return idl.instruction("top_up", args, accounts)


def refund_ix(
    channel: ChannelAccount,
    treasury: Pubkey,
    *,
    renter_token: Pubkey | None = None,
    treasury_token: Pubkey | None = None,
    idl: EscrowIdl | None = None,
) -> Instruction:
    """Close an expired channel; ``treasury`` is the config's treasury owner."""
    idl = idl or default_idl()
    accounts = {
        "channel": channel.address,
        "vault": channel.vault,
        "renter": channel.renter,
        "renter_token": renter_token or associated_token_address(channel.renter, channel.mint),
        "config": config_address(idl.program_id),
        "treasury_token": treasury_token or associated_token_address(treasury, channel.mint),
        "token_program": TOKEN_PROGRAM_ID,
    }
    return idl.instruction("refund", {}, accounts)


def cooperative_close_ix(
    channel: ChannelAccount,
    cumulative: int,
    treasury: Pubkey,
    *,
    renter_token: Pubkey | None = None,
    provider_token: Pubkey | None = None,
    treasury_token: Pubkey | None = None,
    idl: EscrowIdl | None = None,
) -> Instruction:
    """Settle ``cumulative`` and close; the renter and the provider must both sign."""
    idl = idl or default_idl()
    mint = channel.mint
    accounts = {
        "renter": channel.renter,
        "provider": channel.provider,
        "channel": channel.address,
        "vault": channel.vault,
        "renter_token": renter_token or associated_token_address(channel.renter, mint),
        "provider_token": provider_token or associated_token_address(channel.provider, mint),
        "config": config_address(idl.program_id),
        "treasury_token": treasury_token or associated_token_address(treasury, mint),
        "token_program": TOKEN_PROGRAM_ID,
    }
    return idl.instruction("cooperative_close", {"cumulative": cumulative}, accounts)
