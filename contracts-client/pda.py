"""Program addresses of the escrow (mirrors the seeds in ``contracts/escrow.c``).

- config  ``["config"]``
- channel ``["channel", renter, provider, channel_id u64 LE]``
- vault   ``["vault", channel]`` (an SPL token account owned by the channel PDA)

and the program's own ProgramData (``[program id]`` under the upgradeable loader), where
``initialize`` reads the upgrade authority.
"""

from __future__ import annotations

from typing import Final

from dgpu.contracts import PROGRAM_ID
from solders.pubkey import Pubkey
from spl.token.constants import ASSOCIATED_TOKEN_PROGRAM_ID, TOKEN_PROGRAM_ID

CONFIG_SEED: Final = b"config"
CHANNEL_SEED: Final = b"channel"
VAULT_SEED: Final = b"vault"
U64_MAX: Final = 2**64 - 1
BPF_LOADER_UPGRADEABLE_ID: Final = Pubkey.from_string("BPFLoaderUpgradeab1e11111111111111111111111")


def config_address(program_id: Pubkey = PROGRAM_ID) -> Pubkey:
    return Pubkey.find_program_address([CONFIG_SEED], program_id)[0]


def channel_address(
    renter: Pubkey, provider: Pubkey, channel_id: int, program_id: Pubkey = PROGRAM_ID
) -> Pubkey:
    if not 0 <= channel_id <= U64_MAX:
        raise ValueError(f"channel_id {channel_id} is not a u64")
    seeds = [CHANNEL_SEED, bytes(renter), bytes(provider), channel_id.to_bytes(8, "little")]
    return Pubkey.find_program_address(seeds, program_id)[0]


def vault_address(channel: Pubkey, program_id: Pubkey = PROGRAM_ID) -> Pubkey:
    return Pubkey.find_program_address([VAULT_SEED, bytes(channel)], program_id)[0]


def associated_token_address(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The owner's associated token account for ``mint`` (SPL Token, not Token-2022)."""
    seeds = [bytes(owner), bytes(TOKEN_PROGRAM_ID), bytes(mint)]
    return Pubkey.find_program_address(seeds, ASSOCIATED_TOKEN_PROGRAM_ID)[0]


def program_data_address(program_id: Pubkey = PROGRAM_ID) -> Pubkey:
    """The ProgramData account of a program deployed by the upgradeable loader (v3)."""
    return Pubkey.find_program_address([bytes(program_id)], BPF_LOADER_UPGRADEABLE_ID)[0]
