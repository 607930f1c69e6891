"""Devnet wallets and the money on the local chain: keys, SOL, dGPU, escrow config.

Every key lives in ``<state>/keys/<name>.json`` (Solana CLI format, mode 0600) and is
reused on the next run. Setting up the chain is idempotent: airdrops top SOL up to a
floor, dGPU is minted only to a wallet below its floor, and the escrow config is written
only when the program has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dgpu.contracts_client.chain import Chain
from dgpu.contracts_client.errors import ConfigNotFound
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.localnet import (
    TokenMint,
    associated_token_address,
    create_associated_token_account,
    mint_to,
)
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity, save_identity
from solders.pubkey import Pubkey

log = logging.getLogger(__name__)

LAMPORTS_PER_SOL = 1_000_000_000
DGPU = 1_000_000_000  # base units per dGPU (9 decimals)
SOL_FLOOR = 10 * LAMPORTS_PER_SOL
RENTER_DGPU = 1_000 * DGPU
DISPUTE_WINDOW_S = 5  # short on a devnet so that refunds come quickly


@dataclass(frozen=True)
class Wallets:
    admin: Identity
    treasury: Identity
    coordinator: Identity
    bootstrap: Identity
    renter: Identity
    providers: tuple[Identity, ...]

    def all(self) -> list[Identity]:
        return [self.admin, self.treasury, self.coordinator, self.renter, *self.providers]


def key_path(state_dir: Path, name: str) -> Path:
    return state_dir / "keys" / f"{name}.json"


def load_or_create(state_dir: Path, name: str) -> Identity:
    path = key_path(state_dir, name)
    if path.exists():
        return load_identity(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity.generate()
    save_identity(identity, path)
    return identity


def load_wallets(state_dir: Path, providers: int) -> Wallets:
    return Wallets(
        admin=load_or_create(state_dir, "admin"),
        treasury=load_or_create(state_dir, "treasury"),
        coordinator=load_or_create(state_dir, "coordinator"),
        bootstrap=load_or_create(state_dir, "bootstrap"),
        renter=load_or_create(state_dir, "renter"),
        providers=tuple(load_or_create(state_dir, f"provider-{i}") for i in range(providers)),
    )


def _pubkey(identity: Identity) -> Pubkey:
    return Pubkey.from_bytes(identity.public_key)


async def fund(chain: Chain, wallets: Wallets, mint: TokenMint) -> None:
    """SOL for fees for everyone, token accounts for everyone, dGPU for the renter."""
    for identity in wallets.all():
        owner = _pubkey(identity)
        balance = await chain.get_balance(owner)
        if balance < SOL_FLOOR:
            await chain.request_airdrop(owner, SOL_FLOOR - balance)
        account = associated_token_address(owner, mint.address)
        if await chain.get_account(account) is None:
            await create_associated_token_account(chain, mint.authority, owner, mint.address)
    renter_account = associated_token_address(_pubkey(wallets.renter), mint.address)
    held = await chain.get_token_balance(renter_account)
    if held < RENTER_DGPU:
        await mint_to(chain, mint, renter_account, RENTER_DGPU - held)


async def ensure_escrow_config(chain: Chain, wallets: Wallets, mint: TokenMint) -> None:
    """Initialize the escrow (signed by the devnet's admin, who deployed it through the
    upgradeable loader and so is its upgrade authority) with that admin, or add the mint."""
    escrow = EscrowClient(chain)
    try:
        config = await escrow.read_config()
    except ConfigNotFound:
        await escrow.initialize(
            wallets.admin.to_solders(),
            admin=_pubkey(wallets.admin),
            treasury=_pubkey(wallets.treasury),
            mints=[mint.address],
            settler=_pubkey(wallets.coordinator),
            dispute_window=DISPUTE_WINDOW_S,
        )
        log.info("escrow config initialised (fee 5 %%, settler = coordinator)")
        return
    if mint.address not in config.mints:
        await escrow.update_config(wallets.admin.to_solders(), mints=[*config.mints, mint.address])
