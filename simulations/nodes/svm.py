"""The simulation's chain as the real escrow program in LiteSVM.

One in-process :class:`~dgpu.contracts_client.chain.LiteSVMChain` runs the committed escrow
``.so``; its clock is the simulation's virtual clock (LiteSVM reads the injected time
source on every call, so channel expiries and dispute windows pass as virtual time does).
The set-up is what a deployment does: an admin creates the dGPU mint, initialises the
program's config (treasury, the coordinator as settler, fee, dispute window), and every
node gets SOL for fees and rent and an associated token account; renters get tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dgpu.contracts_client.chain import LiteSVMChain
from dgpu.contracts_client.chain.errors import AccountNotFound
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.localnet import (
    TokenMint,
    associated_token_address,
    create_associated_token_account,
    create_mint,
    mint_to,
)
from dgpu.contracts_client.money import ChainEscrow, Escrow
from dgpu.protocol.identity import Identity
from dgpu.simulations.nodes.chain import DISPUTE_WINDOW_S, FEE_BPS, ChainLog, Observed
from solders.pubkey import Pubkey

LAMPORTS_PER_NODE = 100 * 10**9
MINT_SUPPLY_OFFSET = 36


class SvmChain:
    backend = "litesvm"

    def __init__(
        self,
        chain: LiteSVMChain,
        client: EscrowClient,
        mint: TokenMint,
        admin: Identity,
        coordinator: Identity,
        treasury: bytes,
    ) -> None:
        self.chain = chain
        self.client = client
        self.token = mint
        self.admin = admin
        self.mint = bytes(mint.address)
        self.program_id = bytes(client.program_id)
        self.treasury = treasury
        self.coordinator = coordinator
        self.log = ChainLog()
        self.minted = 0

    @classmethod
    async def open(
        cls, now: Callable[[], int], *, coordinator: Identity, treasury: bytes
    ) -> SvmChain:
        admin = Identity.from_label("sim/admin")
        chain = LiteSVMChain(time_source=now, upgrade_authority=admin.to_solders())
        client = EscrowClient(chain)
        await chain.request_airdrop(admin.to_solders().pubkey(), LAMPORTS_PER_NODE)
        mint = await create_mint(
            chain, admin.to_solders(), mint=Identity.from_label("sim/mint").to_solders()
        )
        await create_associated_token_account(
            chain, admin.to_solders(), Pubkey.from_bytes(treasury), mint.address
        )
        await client.initialize(
            admin.to_solders(),
            treasury=Pubkey.from_bytes(treasury),
            mints=[mint.address],
            settler=coordinator.to_solders().pubkey(),
            fee_bps=FEE_BPS,
            dispute_window=DISPUTE_WINDOW_S,
        )
        return cls(chain, client, mint, admin, coordinator, treasury)

    def escrow(self) -> Escrow:
        # Plain batches, as the ledger packs them: the same scenario must give the same
        # run on either backend, and the accounting sizes transactions without a table.
        return Observed(ChainEscrow(self.client, lookup_tables=False), self.log)

    async def fund(
        self, renters: Sequence[Identity], payers: Sequence[Identity], balance: int
    ) -> None:
        admin = self.admin.to_solders()
        for wallet in {w.public_key: w for w in [*renters, *payers]}.values():
            key = wallet.to_solders().pubkey()
            await self.chain.request_airdrop(key, LAMPORTS_PER_NODE)
            await create_associated_token_account(self.chain, admin, key, self.token.address)
        for renter in renters:
            account = associated_token_address(renter.to_solders().pubkey(), self.token.address)
            await mint_to(self.chain, self.token, account, balance)
            self.minted += balance

    async def balance(self, owner: bytes) -> int:
        account = associated_token_address(Pubkey.from_bytes(owner), self.token.address)
        try:
            return await self.chain.get_token_balance(account)
        except AccountNotFound:
            return 0

    async def supply(self) -> int:
        account = await self.chain.get_account(self.token.address)
        assert account is not None
        raw = bytes(account.data)[MINT_SUPPLY_OFFSET : MINT_SUPPLY_OFFSET + 8]
        return int.from_bytes(raw, "little")
