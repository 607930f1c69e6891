"""Instruction builders of the escrow program (pure: no chain access).

Each returns a solders ``Instruction`` encoded through the IDL (:mod:`dgpu.contracts_client.idl`).
Token accounts default to associated token accounts. ``settle`` lives in
:mod:`dgpu.contracts_client.settlement` (it needs the Ed25519 precompile next to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from dgpu.contracts_client.idl import ChannelAccount, EscrowIdl, default_idl
from dgpu.contracts_client.pda import (
    associated_token_address,
    channel_address,
    config_address,
    program_data_address,
    vault_address,
)
from solders.instruction import Instruction
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from spl.token.constants import TOKEN_PROGRAM_ID

DEFAULT_FEE_BPS: Final = 500
DEFAULT_DISPUTE_WINDOW: Final = 24 * 3600
MAX_MINTS: Final = 4
DEFAULT_MAX_FEE_BPS: Final = 1_000
"""A renter's default bound on the platform fee: 10 % (the config's default is 5 %)."""
DEFAULT_MAX_DISPUTE_WINDOW: Final = 7 * 24 * 3600
"""A renter's default bound on the dispute window: a week (the config's default is a day)."""


@dataclass(frozen=True)
class ChannelBounds:
    """The worst terms a renter accepts for a channel it opens: ``open_channel`` is refused
    when the config's fee or dispute window exceeds them, so an admin's config change that
    lands just before the opening cannot impose new terms on it."""

    max_fee_bps: int = DEFAULT_MAX_FEE_BPS
    max_dispute_window: int = DEFAULT_MAX_DISPUTE_WINDOW

    def __post_init__(self) -> None:
        if not 0 <= self.max_fee_bps <= 10_000:
            raise ValueError(f"max_fee_bps {self.max_fee_bps} is not 0..10000")
        if not 0 <= self.max_dispute_window < 2**63:
            raise ValueError(f"max_dispute_window {self.max_dispute_window} is not an i64 >= 0")

    def allows(self, fee_bps: int, dispute_window: int) -> bool:
        """Whether a config with these terms may open the channel (the program's rule)."""
        return fee_bps <= self.max_fee_bps and dispute_window <= self.max_dispute_window


DEFAULT_BOUNDS: Final = ChannelBounds()


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
    authority: Pubkey,
    *,
    treasury: Pubkey,
    mints: Sequence[Pubkey],
    admin: Pubkey | None = None,
    payer: Pubkey | None = None,
    settler: Pubkey | None = None,
    fee_bps: int = DEFAULT_FEE_BPS,
    dispute_window: int = DEFAULT_DISPUTE_WINDOW,
    idl: EscrowIdl | None = None,
) -> Instruction:
    """Create the config; ``authority`` must be the program's upgrade authority and sign.
    ``admin`` (default: the authority) may later update the config; ``payer`` (default:
    the authority) signs too and pays the rent; ``settler`` defaults to the admin."""
    idl = idl or default_idl()
    admin = admin or authority
    args: dict[str, object] = {"admin": admin}
    args |= _config_args(
        settler=settler or admin,
        treasury=treasury,
        fee_bps=fee_bps,
        dispute_window=dispute_window,
        mints=mints,
    )
    accounts = {
        "payer": payer or authority,
        "authority": authority,
        "config": config_address(idl.program_id),
        "program_data": program_data_address(idl.program_id),
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
    bounds: ChannelBounds = DEFAULT_BOUNDS,
    renter_token: Pubkey | None = None,
    idl: EscrowIdl | None = None,
) -> tuple[Instruction, Pubkey]:
    """The instruction and the channel's address; ``bounds`` are the renter's."""
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
    args = {
        "channel_id": channel_id,
        "deposit": deposit,
        "expiry": expiry,
        "max_fee_bps": bounds.max_fee_bps,
        "max_dispute_window": bounds.max_dispute_window,
    }
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
