"""A small escrow world for coordinator tests: the real ``.so`` on a chain (LiteSVM or
JSON-RPC), a mint, providers and renters with token accounts, a funded settler."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import Chain, LiteSVMChain
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.idl import ChannelAccount
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import sign_receipt
from solders.keypair import Keypair
from solders.pubkey import Pubkey

SOL = 10**9
DGPU = 10**9
FEE_BPS = 500


@dataclass
class World:
    chain: Chain
    escrow: EscrowClient
    mint: localnet.TokenMint
    settler: Identity
    providers: list[Identity]
    renters: list[Identity]
    opened: list[ChannelAccount] = field(default_factory=list)

    async def open(self, renter: Identity, provider: Identity, deposit: int) -> ChannelAccount:
        expiry = await self.chain.unix_time() + 3600
        opened = await self.escrow.open_channel(
            renter.to_solders(),
            provider=provider.to_solders().pubkey(),
            mint=self.mint.address,
            deposit=deposit,
            expiry=expiry,
        )
        self.opened.append(opened.state)
        return opened.state

    def receipt(
        self, renter: Identity, channel: ChannelAccount, cumulative: int, seq: int = 1
    ) -> Receipt:
        job_id = bytes(channel.address)[:16]
        receipt = Receipt(
            job_id=job_id,
            seq=seq,
            renter=renter.public_key,
            program_id=bytes(self.escrow.program_id),
            channel=bytes(channel.address),
            open_nonce=channel.open_nonce,
            cumulative=cumulative,
        )
        return sign_receipt(receipt, renter)

    def token_account(self, owner: Identity) -> Pubkey:
        return localnet.associated_token_address(owner.to_solders().pubkey(), self.mint.address)

    async def balance(self, owner: Identity) -> int:
        return await self.chain.get_token_balance(self.token_account(owner))


async def make_world(
    chain: Chain,
    *,
    providers: int = 3,
    renters: int = 2,
    label: str = "world",
    mint: localnet.TokenMint | None = None,
    initialize: bool = True,
    authority: Keypair | None = None,
) -> World:
    """``authority``: the escrow's upgrade authority (default: the LiteSVM chain's own)."""
    if authority is None and isinstance(chain, LiteSVMChain):
        authority = chain.upgrade_authority
    admin = Keypair()
    await chain.request_airdrop(admin.pubkey(), 100 * SOL)
    if mint is None:
        mint = await localnet.create_mint(chain, admin)
    escrow = EscrowClient(chain)
    if initialize:
        treasury = Keypair()
        await localnet.fund_wallet(chain, treasury.pubkey(), mint=mint)
        assert authority is not None, "initializing the escrow needs its upgrade authority"
        await escrow.initialize(
            authority,
            admin=admin.pubkey(),
            payer=admin,
            treasury=treasury.pubkey(),
            mints=[mint.address],
            fee_bps=FEE_BPS,
        )
    tag = os.urandom(4).hex()
    settler = Identity.from_label(f"{label}-settler-{tag}")
    await chain.request_airdrop(settler.to_solders().pubkey(), 10 * SOL)
    world = World(chain, escrow, mint, settler, [], [])
    for k in range(providers):
        provider = Identity.from_label(f"{label}-provider-{k}-{tag}")
        await localnet.fund_wallet(chain, provider.to_solders().pubkey(), lamports=SOL, mint=mint)
        world.providers.append(provider)
    for k in range(renters):
        renter = Identity.from_label(f"{label}-renter-{k}-{tag}")
        await localnet.fund_wallet(
            chain, renter.to_solders().pubkey(), lamports=10 * SOL, mint=mint, tokens=1_000 * DGPU
        )
        world.renters.append(renter)
    return world


def net_of(amount: int) -> int:
    """What the provider receives of a settled increment (the fee stays in the vault)."""
    return amount - amount * FEE_BPS // 10_000
