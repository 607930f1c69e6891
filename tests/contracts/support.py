"""A small escrow world on a fresh LiteSVM chain with the real ``.so``.

One admin, a mint on the config's allow-list, a treasury, a renter and a provider with
associated token accounts, and helpers to open channels, sign receipts, look at every
token balance and send hand-built instructions (for the attack cases).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

import pytest
from dgpu.contracts import PROGRAM_ID
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import LiteSVMChain, TransactionFailed, send_instructions
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.idl import ChannelAccount
from dgpu.contracts_client.settlement import Settlement
from dgpu.protocol.identity import Identity
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

START_TIME = 1_750_000_000
SOL = 10**9
DGPU = 10**9  # base units per dGPU token
RENTER_TOKENS = 1_000 * DGPU
FEE_BPS = 500
DISPUTE_WINDOW = 3_600


@dataclass
class Party:
    identity: Identity
    keypair: Keypair
    token: Pubkey

    @property
    def pubkey(self) -> Pubkey:
        return self.keypair.pubkey()


@dataclass
class World:
    chain: LiteSVMChain
    client: EscrowClient
    admin: Keypair
    mint: localnet.TokenMint
    treasury: Party
    renter: Party
    provider: Party
    channels: list[ChannelAccount] = field(default_factory=list)

    async def initialize(self) -> Signature:
        return await self.client.initialize(
            self.admin,
            treasury=self.treasury.pubkey,
            mints=[self.mint.address],
            fee_bps=FEE_BPS,
            dispute_window=DISPUTE_WINDOW,
        )

    async def party(self, label: str, tokens: int = 0) -> Party:
        identity = Identity.from_label(label)
        keypair = identity.to_solders()
        token = await localnet.fund_wallet(
            self.chain, keypair.pubkey(), lamports=10 * SOL, mint=self.mint, tokens=tokens
        )
        assert token is not None
        return Party(identity, keypair, token)

    async def open(
        self,
        deposit: int = 10 * DGPU,
        *,
        expires_in: int = 3_600,
        channel_id: int | None = None,
        renter: Party | None = None,
        provider: Party | None = None,
    ) -> ChannelAccount:
        renter = renter or self.renter
        provider = provider or self.provider
        now = await self.chain.unix_time()
        opened = await self.client.open_channel(
            renter.keypair,
            provider=provider.pubkey,
            mint=self.mint.address,
            deposit=deposit,
            expiry=now + expires_in,
            channel_id=channel_id,
        )
        self.channels.append(opened.state)
        return opened.state

    def receipt(
        self, channel: ChannelAccount, cumulative: int, signer: Party | None = None
    ) -> Settlement:
        """A settlement of ``cumulative`` on ``channel``, signed by the renter (or ``signer``)."""
        signer = signer or self.renter
        signature = channel.receipt(cumulative).sign(signer.identity)
        return Settlement.for_channel(channel, cumulative, signature)

    async def token_balances(self, extra: Sequence[Pubkey] = ()) -> dict[Pubkey, int]:
        """Every token account of the world (parties, open vaults, ``extra``)."""
        accounts = [self.treasury.token, self.renter.token, self.provider.token, *extra]
        accounts += [c.vault for c in self.channels]
        found = await self.chain.get_multiple_accounts(accounts)
        return {
            a: int.from_bytes(bytes(acc.data)[64:72], "little") if acc is not None else -1
            for a, acc in zip(accounts, found, strict=True)
        }

    async def send(
        self, instructions: Sequence[Instruction], payer: Keypair, *signers: Keypair
    ) -> Signature:
        return await send_instructions(self.chain, list(instructions), payer, signers)

    async def send_unchecked(
        self, instructions: Sequence[Instruction], payer: Keypair, *signers: Keypair
    ) -> Signature:
        """Like :meth:`send` but signs whatever metas say (for missing-signature cases)."""
        blockhash = await self.chain.latest_blockhash()
        message = Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
        tx = Transaction([payer, *signers], message, blockhash)
        return await self.chain.send_transaction(tx)

    def logs(self, signature: Signature) -> tuple[str, ...]:
        (landed,) = self.chain.ledger.statuses([signature])
        assert landed is not None
        return landed.logs

    def units(self, signature: Signature) -> int:
        (landed,) = self.chain.ledger.statuses([signature])
        assert landed is not None
        return landed.units_consumed


async def make_world(*, initialize: bool = True, program: bytes | None = None) -> World:
    """``program``: another build of the escrow (a mutant) in place of the shipped one."""
    admin = Keypair.from_seed(bytes([1] * 32))
    programs = {} if program is None else {PROGRAM_ID: program}
    chain = LiteSVMChain(
        start_time=START_TIME,
        upgrade_authority=admin,
        escrow=program is None,
        programs=programs,
    )
    await chain.request_airdrop(admin.pubkey(), 100 * SOL)
    mint = await localnet.create_mint(chain, admin, mint=Keypair.from_seed(bytes([2] * 32)))
    client = EscrowClient(chain)
    placeholder = Party(Identity.from_label("unused"), admin, admin.pubkey())
    world = World(chain, client, admin, mint, placeholder, placeholder, placeholder)
    world.treasury = await world.party("treasury")
    world.renter = await world.party("renter", RENTER_TOKENS)
    world.provider = await world.party("provider")
    if initialize:
        await world.initialize()
    return world


def error_name(world: World, exc: TransactionFailed) -> str | None:
    code = exc.custom_code
    known = world.client.idl.error(code) if code is not None else None
    return known[0] if known else None


async def expect_refused(
    world: World,
    error: str | None,
    action: Awaitable[object],
    *,
    watch: Sequence[Pubkey] = (),
) -> TransactionFailed:
    """Await ``action``; it must fail with the IDL error ``error`` (``None``: any failure)
    and leave every token balance and every open channel exactly as they were."""
    channels = [c.address for c in world.channels]
    tokens_before = await world.token_balances(watch)
    states_before = await world.client.read_channels(channels)
    with pytest.raises(TransactionFailed) as refused:
        await action
    if error is not None:
        assert error_name(world, refused.value) == error, refused.value
    assert await world.token_balances(watch) == tokens_before
    assert await world.client.read_channels(channels) == states_before
    return refused.value


def with_meta(
    ix: Instruction,
    index: int,
    *,
    pubkey: Pubkey | None = None,
    is_signer: bool | None = None,
    is_writable: bool | None = None,
) -> Instruction:
    """``ix`` with account ``index`` replaced or re-flagged."""
    metas = list(ix.accounts)
    old = metas[index]
    metas[index] = AccountMeta(
        pubkey or old.pubkey,
        is_signer=old.is_signer if is_signer is None else is_signer,
        is_writable=old.is_writable if is_writable is None else is_writable,
    )
    return Instruction(ix.program_id, bytes(ix.data), metas)
