"""``EscrowClient``: the escrow program's operations as async calls over a ``Chain``.

Works under trio and asyncio alike (it only awaits the injected
:class:`~dgpu.contracts_client.chain.Chain`). Each write builds its instructions with
:mod:`dgpu.contracts_client.instructions` / :mod:`dgpu.contracts_client.settlement`, sends one
transaction and returns once it is confirmed. A refusal by the escrow program is raised
as :class:`~dgpu.contracts_client.errors.EscrowProgramError` (IDL error name and message).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from dgpu.contracts_client.chain import Chain, TransactionFailed, send_instructions
from dgpu.contracts_client.ed25519 import ED25519_PROGRAM_ID
from dgpu.contracts_client.errors import (
    AccountDecodeError,
    ChannelNotFound,
    ConfigNotFound,
    EscrowProgramError,
    ProgramNotDeployed,
)
from dgpu.contracts_client.idl import (
    ChannelAccount,
    ConfigState,
    EscrowIdl,
    default_idl,
    idl_for,
)
from dgpu.contracts_client.instructions import (
    DEFAULT_BOUNDS,
    DEFAULT_DISPUTE_WINDOW,
    DEFAULT_FEE_BPS,
    ChannelBounds,
    cooperative_close_ix,
    initialize_ix,
    open_channel_ix,
    refund_ix,
    top_up_ix,
    update_config_ix,
)
from dgpu.contracts_client.lookup_table import (
    MAX_EXTEND,
    create_lookup_table,
    decode_lookup_table,
    extend_lookup_table,
)
from dgpu.contracts_client.pda import config_address
from dgpu.contracts_client.settlement import Settlement, settle_transaction
from solders.account import Account
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenedChannel:
    """A channel just opened: its state as read back from the chain, and the signature."""

    state: ChannelAccount
    signature: Signature

    @property
    def address(self) -> Pubkey:
        return self.state.address


class EscrowClient:
    """The escrow program over a chain, deployed under ``program_id`` (default: the shipped
    key's). The program id is held once, by the IDL: PDAs, instructions, owner checks,
    receipts and the money seam (:class:`~dgpu.contracts_client.money.ChainEscrow`) all
    read it from here. ``idl`` (bound to its own program id) excludes ``program_id``."""

    def __init__(
        self, chain: Chain, *, program_id: Pubkey | None = None, idl: EscrowIdl | None = None
    ) -> None:
        if idl is not None and program_id is not None and idl.program_id != program_id:
            raise ValueError(f"the IDL is bound to {idl.program_id}, not {program_id}")
        self.chain = chain
        self.idl = idl or (default_idl() if program_id is None else idl_for(program_id))
        self.program_id = self.idl.program_id
        self.config_address = config_address(self.program_id)

    async def check_deployed(self) -> None:
        """Raise :class:`ProgramNotDeployed` unless an executable program lives at the
        program id on this chain (a node pointed at a cluster where the escrow runs under
        another key would otherwise fail later on a missing config or channel)."""
        account = await self.chain.get_account(self.program_id)
        if account is None:
            raise ProgramNotDeployed(self.program_id, "no account there")
        if not account.executable:
            raise ProgramNotDeployed(
                self.program_id, f"the account there is not executable (owner {account.owner})"
            )

    # -- reads ------------------------------------------------------------------------

    async def read_config(self) -> ConfigState:
        account = await self.chain.get_account(self.config_address)
        if account is None:
            raise ConfigNotFound(self.config_address)
        self._check_owner(self.config_address, account, "Config")
        return self.idl.decode_config(self.config_address, bytes(account.data))

    async def read_channel(self, channel: Pubkey) -> ChannelAccount:
        """The channel's state; :class:`ChannelNotFound` once closed or never opened."""
        (state,) = await self.read_channels([channel])
        if state is None:
            raise ChannelNotFound(channel)
        return state

    async def read_channels(self, channels: Sequence[Pubkey]) -> list[ChannelAccount | None]:
        """States of several channels in one call (``None`` where there is none)."""
        accounts = await self.chain.get_multiple_accounts(list(channels))
        states: list[ChannelAccount | None] = []
        for address, account in zip(channels, accounts, strict=True):
            if account is None or len(account.data) == 0:
                states.append(None)
                continue
            self._check_owner(address, account, "Channel")
            states.append(self.idl.decode_channel(address, bytes(account.data)))
        return states

    # -- config -----------------------------------------------------------------------

    async def initialize(
        self,
        authority: Keypair,
        *,
        treasury: Pubkey,
        mints: Sequence[Pubkey],
        admin: Pubkey | None = None,
        payer: Keypair | None = None,
        settler: Pubkey | None = None,
        fee_bps: int = DEFAULT_FEE_BPS,
        dispute_window: int = DEFAULT_DISPUTE_WINDOW,
    ) -> Signature:
        """Create the config, signed by the program's upgrade ``authority``; ``admin``
        (default: the authority) runs it from then on; ``payer`` (default: the authority)
        pays the rent and the fee."""
        ix = initialize_ix(
            authority.pubkey(),
            treasury=treasury,
            mints=mints,
            admin=admin,
            payer=None if payer is None else payer.pubkey(),
            settler=settler,
            fee_bps=fee_bps,
            dispute_window=dispute_window,
            idl=self.idl,
        )
        return await self._send([ix], payer or authority, [authority])

    async def update_config(
        self,
        admin: Keypair,
        *,
        new_admin: Pubkey | None = None,
        settler: Pubkey | None = None,
        treasury: Pubkey | None = None,
        mints: Sequence[Pubkey] | None = None,
        fee_bps: int | None = None,
        dispute_window: int | None = None,
    ) -> Signature:
        """Change the config; what is not given keeps its current value."""
        current = await self.read_config()
        ix = update_config_ix(
            admin.pubkey(),
            new_admin=new_admin or current.admin,
            settler=settler or current.settler,
            treasury=treasury or current.treasury,
            mints=current.mints if mints is None else mints,
            fee_bps=current.fee_bps if fee_bps is None else fee_bps,
            dispute_window=current.dispute_window if dispute_window is None else dispute_window,
            idl=self.idl,
        )
        return await self._send([ix], admin)

    # -- channels ---------------------------------------------------------------------

    async def open_channel(
        self,
        renter: Keypair,
        *,
        provider: Pubkey,
        mint: Pubkey,
        deposit: int,
        expiry: int,
        bounds: ChannelBounds = DEFAULT_BOUNDS,
        channel_id: int | None = None,
        renter_token: Pubkey | None = None,
        payer: Keypair | None = None,
    ) -> OpenedChannel:
        """Open and fund a channel (``channel_id`` random unless given); the program
        assigns the opening nonce, read back into the returned state."""
        if channel_id is None:
            channel_id = secrets.randbits(64)
        ix, channel = open_channel_ix(
            renter.pubkey(),
            provider=provider,
            mint=mint,
            channel_id=channel_id,
            deposit=deposit,
            expiry=expiry,
            bounds=bounds,
            renter_token=renter_token,
            idl=self.idl,
        )
        signature = await self._send([ix], payer or renter, [renter])
        state = await self.read_channel(channel)
        log.info("opened channel %s nonce %d deposit %d", channel, state.open_nonce, deposit)
        return OpenedChannel(state, signature)

    async def top_up(
        self,
        renter: Keypair,
        channel: Pubkey,
        amount: int,
        *,
        expiry: int | None = None,
        renter_token: Pubkey | None = None,
    ) -> Signature:
        state = await self.read_channel(channel)
        ix = top_up_ix(state, amount, expiry=expiry, renter_token=renter_token, idl=self.idl)
        return await self._send([ix], renter)

    async def settlement(
        self,
        channel: Pubkey,
        cumulative: int,
        signature: bytes,
        *,
        provider_token: Pubkey | None = None,
    ) -> Settlement:
        """A :class:`Settlement` of a signed receipt, with the accounts read from chain."""
        state = await self.read_channel(channel)
        return Settlement.for_channel(
            state, cumulative, signature, provider_token=provider_token, program_id=self.program_id
        )

    async def settle_batch(
        self,
        payer: Keypair,
        items: Sequence[Settlement],
        *,
        lookup_table: AddressLookupTableAccount | None = None,
    ) -> Signature:
        """Settle receipts in one transaction (v0 message; indexed through
        ``lookup_table`` when given). Anyone may pay for it."""
        blockhash = await self.chain.latest_blockhash()
        tx = settle_transaction(payer, items, blockhash, lookup_table, self.idl)
        try:
            return await self.chain.send_transaction(tx)
        except TransactionFailed as exc:
            raise self._explain(exc, [ED25519_PROGRAM_ID, self.program_id]) from None

    async def refund(
        self,
        payer: Keypair,
        channel: Pubkey,
        *,
        renter_token: Pubkey | None = None,
        treasury_token: Pubkey | None = None,
    ) -> Signature:
        """After expiry plus the dispute window: fees to the treasury, the rest to the
        renter, channel closed. Anyone may pay for it."""
        state = await self.read_channel(channel)
        config = await self.read_config()
        ix = refund_ix(
            state,
            config.treasury,
            renter_token=renter_token,
            treasury_token=treasury_token,
            idl=self.idl,
        )
        return await self._send([ix], payer)

    async def cooperative_close(
        self,
        renter: Keypair,
        provider: Keypair,
        channel: Pubkey,
        cumulative: int,
        *,
        payer: Keypair | None = None,
        renter_token: Pubkey | None = None,
        provider_token: Pubkey | None = None,
        treasury_token: Pubkey | None = None,
    ) -> Signature:
        """Settle ``cumulative`` and close now, signed by both parties."""
        state = await self.read_channel(channel)
        config = await self.read_config()
        ix = cooperative_close_ix(
            state,
            cumulative,
            config.treasury,
            renter_token=renter_token,
            provider_token=provider_token,
            treasury_token=treasury_token,
            idl=self.idl,
        )
        return await self._send([ix], payer or renter, [renter, provider])

    # -- address lookup tables (for settlement batches) --------------------------------

    async def create_lookup_table(
        self, authority: Keypair, addresses: Sequence[Pubkey], *, payer: Keypair | None = None
    ) -> AddressLookupTableAccount:
        """Create a lookup table holding ``addresses`` (usable from the next slot on)."""
        payer = payer or authority
        slot = await self.chain.get_slot()
        create, table = create_lookup_table(authority.pubkey(), payer.pubkey(), slot)
        await send_instructions(self.chain, [create], payer, [authority])
        await self.extend_lookup_table(authority, table, addresses, payer=payer)
        return await self.read_lookup_table(table)

    async def extend_lookup_table(
        self,
        authority: Keypair,
        table: Pubkey,
        addresses: Sequence[Pubkey],
        *,
        payer: Keypair | None = None,
    ) -> None:
        payer = payer or authority
        for start in range(0, len(addresses), MAX_EXTEND):
            chunk = addresses[start : start + MAX_EXTEND]
            ix = extend_lookup_table(table, authority.pubkey(), payer.pubkey(), chunk)
            await send_instructions(self.chain, [ix], payer, [authority])

    async def read_lookup_table(self, table: Pubkey) -> AddressLookupTableAccount:
        account = await self.chain.get_account(table)
        if account is None:
            raise AccountDecodeError(table, "lookup table", "no such account")
        try:
            return decode_lookup_table(table, bytes(account.data))
        except ValueError as exc:
            raise AccountDecodeError(table, "lookup table", str(exc)) from None

    # -- plumbing ---------------------------------------------------------------------

    async def _send(
        self, instructions: list[Instruction], payer: Keypair, signers: Sequence[Keypair] = ()
    ) -> Signature:
        try:
            return await send_instructions(self.chain, instructions, payer, signers)
        except TransactionFailed as exc:
            raise self._explain(exc, [ix.program_id for ix in instructions]) from None

    def _explain(self, exc: TransactionFailed, programs: Sequence[Pubkey]) -> TransactionFailed:
        """The IDL error behind a failure of one of our instructions, if that is what it is."""
        index, code = exc.instruction_index, exc.custom_code
        if index is None or code is None or index >= len(programs):
            return exc
        if programs[index] != self.program_id or (known := self.idl.error(code)) is None:
            return exc
        return EscrowProgramError(exc, code, *known)

    def _check_owner(self, address: Pubkey, account: Account, what: str) -> None:
        if account.owner != self.program_id:
            raise AccountDecodeError(address, what, f"owned by {account.owner}")
