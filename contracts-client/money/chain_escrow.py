"""The :class:`~dgpu.contracts_client.money.escrow.Escrow` over the real escrow program.

A thin adapter from raw 32-byte keys and :class:`~dgpu.protocol.messages.Receipt` to
:class:`~dgpu.contracts_client.escrow.EscrowClient` (solders types) over any
:class:`~dgpu.contracts_client.chain.Chain`: LiteSVM in process, or JSON-RPC. The client's
and the chain's errors are converted here, once, into the seam's
(:mod:`dgpu.contracts_client.money.errors`).

Packing: a settle transaction carries at most :func:`receipts_per_transaction` receipts
(the Ed25519 precompile's 206 bytes per receipt dominate; an address lookup table saves
the 3 x 32 bytes of account keys per receipt). :class:`LookupTables` keeps the tables a
payer owns (it is their authority): each channel's (channel, vault, provider token) triple
is added once, the first time the channel is packed, and every later settlement of that
channel reuses it. A table holds 256 addresses; when it is full a new one is started.
Batches never mix tables; channels that could not be added go in plain batches. Tables
live in memory: after a restart new ones are made (the old ones keep their rent).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from dgpu.contracts_client.chain import Chain, ChainError, TransactionFailed
from dgpu.contracts_client.chain.errors import AccountNotFound
from dgpu.contracts_client.errors import (
    AccountDecodeError,
    BatchTooLarge,
    EscrowClientError,
    EscrowProgramError,
)
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.idl import ChannelAccount
from dgpu.contracts_client.instructions import DEFAULT_BOUNDS, ChannelBounds
from dgpu.contracts_client.localnet import associated_token_address
from dgpu.contracts_client.lookup_table import MAX_ADDRESSES
from dgpu.contracts_client.money.errors import (
    ChainUnavailable,
    ChannelNotFound,
    ChannelRefused,
    SettlementRefused,
)
from dgpu.contracts_client.money.escrow import ChannelState, OpenedChannel, Refunded, Settled
from dgpu.contracts_client.settlement import Settlement, receipts_per_transaction
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.sysvar import INSTRUCTIONS
from spl.token.constants import TOKEN_PROGRAM_ID

log = logging.getLogger(__name__)
FIXED_ENTRIES: Final = (INSTRUCTIONS, TOKEN_PROGRAM_ID)


def _state(account: ChannelAccount) -> ChannelState:
    return ChannelState(
        address=bytes(account.address),
        renter=bytes(account.renter),
        provider=bytes(account.provider),
        mint=bytes(account.mint),
        open_nonce=account.open_nonce,
        deposit=account.deposit,
        settled=account.settled,
        expiry=account.expiry,
        dispute_window=account.dispute_window,
    )


class LookupTables:
    """The address lookup tables one payer owns, and which channel is in which."""

    def __init__(self, client: EscrowClient, payer: Keypair) -> None:
        self.client = client
        self.payer = payer
        self.tables: list[AddressLookupTableAccount] = []
        self.table_of: dict[bytes, int] = {}

    def of(self, receipts: Sequence[Receipt]) -> AddressLookupTableAccount | None:
        """The one table holding every channel of ``receipts``, if there is one."""
        found = {self.table_of.get(r.channel) for r in receipts}
        index = found.pop() if len(found) == 1 else None
        return None if index is None else self.tables[index]

    def pack(self, receipts: Sequence[Receipt]) -> list[list[Receipt]]:
        groups: dict[int | None, list[Receipt]] = {}
        for receipt in receipts:
            groups.setdefault(self.table_of.get(receipt.channel), []).append(receipt)
        batches: list[list[Receipt]] = []
        for table, members in groups.items():
            size = receipts_per_transaction(with_lookup_table=table is not None)
            batches.extend(members[k : k + size] for k in range(0, len(members), size))
        return batches

    async def add(self, settlements: Sequence[Settlement]) -> None:
        """Put the triples of ``settlements`` into tables (best effort: a chain failure
        leaves them out, and they settle in plain batches)."""
        pending = [s for s in settlements if bytes(s.channel) not in self.table_of]
        while pending:
            if not self.tables or len(self.tables[-1].addresses) + 3 > MAX_ADDRESSES:
                room = (MAX_ADDRESSES - len(FIXED_ENTRIES)) // 3
                batch, pending = pending[:room], pending[room:]
                entries = [*FIXED_ENTRIES, *(key for s in batch for key in s.accounts)]
                try:
                    table = await self.client.create_lookup_table(self.payer, entries)
                except (ChainError, EscrowClientError) as exc:
                    log.warning("cannot create a lookup table: %s", exc)
                    return
                self.tables.append(table)
                log.info("created lookup table %s (%d addresses)", table.key, len(entries))
            else:
                current = self.tables[-1]
                room = (MAX_ADDRESSES - len(current.addresses)) // 3
                batch, pending = pending[:room], pending[room:]
                entries = [key for s in batch for key in s.accounts]
                try:
                    await self.client.extend_lookup_table(self.payer, current.key, entries)
                    table = await self.client.read_lookup_table(current.key)
                except (ChainError, EscrowClientError) as exc:
                    log.warning("cannot extend lookup table %s: %s", current.key, exc)
                    return
                self.tables[-1] = table
            for item in batch:
                self.table_of[bytes(item.channel)] = len(self.tables) - 1


class ChainEscrow:
    """:class:`Escrow` through ``EscrowClient`` (the program id is the client's).

    ``lookup_tables`` False: plain batches only (clusters without the lookup table
    program, or where table rent is not worth it)."""

    def __init__(self, client: EscrowClient, *, lookup_tables: bool = True) -> None:
        self.client = client
        self.chain: Chain = client.chain
        self.use_lookup_tables = lookup_tables
        # Accounts last read, so packing and settling a round's channels read them once.
        # A stale entry is harmless: it is used only for the opening it was read for.
        self._accounts: dict[bytes, ChannelAccount] = {}
        self._tables: dict[bytes, LookupTables] = {}

    @property
    def program_id(self) -> bytes:
        return bytes(self.client.program_id)

    async def unix_time(self) -> int:
        return await self.chain.unix_time()

    async def read_channel(self, channel: bytes) -> ChannelState | None:
        (state,) = await self.client.read_channels([Pubkey.from_bytes(channel)])
        if state is None:
            return None
        self._accounts[channel] = state
        return _state(state)

    async def read_channels(self, channels: Sequence[bytes]) -> list[ChannelState | None]:
        keys = [Pubkey.from_bytes(channel) for channel in channels]
        try:
            accounts = await self.client.read_channels(keys)
        except AccountDecodeError:
            # Some address holds an account of another kind: read one by one, those are None.
            accounts = [await self._read_one(key) for key in keys]
        except ChainError as exc:
            raise ChainUnavailable(f"cannot read channels: {exc}") from exc
        found: list[ChannelState | None] = []
        for channel, account in zip(channels, accounts, strict=True):
            if account is None:
                self._accounts.pop(channel, None)
                found.append(None)
                continue
            self._accounts[channel] = account
            found.append(_state(account))
        return found

    async def _read_one(self, key: Pubkey) -> ChannelAccount | None:
        try:
            (account,) = await self.client.read_channels([key])
        except AccountDecodeError:
            return None
        except ChainError as exc:
            raise ChainUnavailable(f"cannot read channel {key}: {exc}") from exc
        return account

    async def open_channel(
        self,
        renter: Identity,
        *,
        provider: bytes,
        mint: bytes,
        deposit: int,
        expiry: int,
        bounds: ChannelBounds = DEFAULT_BOUNDS,
    ) -> OpenedChannel:
        opened = await self.client.open_channel(
            renter.to_solders(),
            provider=Pubkey.from_bytes(provider),
            mint=Pubkey.from_bytes(mint),
            deposit=deposit,
            expiry=expiry,
            bounds=bounds,
        )
        return OpenedChannel(
            address=bytes(opened.address),
            open_nonce=opened.state.open_nonce,
            deposit=opened.state.deposit,
            expiry=opened.state.expiry,
            signature=str(opened.signature),
        )

    def _tables_of(self, payer: Identity) -> LookupTables:
        tables = self._tables.get(payer.public_key)
        if tables is None:
            tables = self._tables[payer.public_key] = LookupTables(self.client, payer.to_solders())
        return tables

    async def pack(self, payer: Identity, receipts: Sequence[Receipt]) -> list[list[Receipt]]:
        tables = self._tables_of(payer)
        if self.use_lookup_tables:
            known = [r for r in receipts if self._known(r)]
            await tables.add([self._settlement(r) for r in known])
        return tables.pack(receipts)

    def _known(self, receipt: Receipt) -> bool:
        account = self._accounts.get(receipt.channel)
        return account is not None and account.open_nonce == receipt.open_nonce

    def _settlement(self, receipt: Receipt) -> Settlement:
        account = self._accounts[receipt.channel]
        return Settlement.for_channel(
            account, receipt.cumulative, receipt.sig, program_id=self.client.program_id
        )

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        missing = [Pubkey.from_bytes(r.channel) for r in receipts if not self._known(r)]
        if missing:
            await self.read_channels([bytes(key) for key in missing])
        unknown = [r for r in receipts if not self._known(r)]
        if unknown:
            raise SettlementRefused(
                f"no channel opening {unknown[0].open_nonce} at {unknown[0].channel.hex()}",
                permanent=True,
            )
        settlements = [self._settlement(r) for r in receipts]
        table = self._tables_of(payer).of(receipts) if self.use_lookup_tables else None
        try:
            signature = await self.client.settle_batch(
                payer.to_solders(), settlements, lookup_table=table
            )
        except EscrowProgramError as exc:
            raise SettlementRefused(str(exc), permanent=True) from exc
        except (BatchTooLarge, TransactionFailed) as exc:
            raise SettlementRefused(str(exc), permanent=False) from exc
        except ChainError as exc:
            raise ChainUnavailable(str(exc)) from exc
        states = await self.read_channels([r.channel for r in receipts])
        marks = tuple(
            (receipt.channel, state.settled if state is not None else receipt.cumulative)
            for state, receipt in zip(states, receipts, strict=True)
        )
        return Settled(str(signature), marks)

    async def refund(self, payer: Identity, channel: bytes) -> Refunded:
        try:
            state = await self.client.read_channel(Pubkey.from_bytes(channel))
            signature = await self.client.refund(payer.to_solders(), state.address)
        except TransactionFailed as exc:  # the program's refusals included
            raise ChannelRefused(str(exc)) from exc
        except EscrowClientError as exc:
            raise ChannelNotFound(channel) from exc
        except ChainError as exc:
            raise ChainUnavailable(f"cannot refund {channel.hex()}: {exc}") from exc
        return Refunded(str(signature), channel, state.deposit - state.settled)

    async def token_balance(self, owner: bytes, mint: bytes) -> int:
        account = associated_token_address(Pubkey.from_bytes(owner), Pubkey.from_bytes(mint))
        try:
            return await self.chain.get_token_balance(account)
        except AccountNotFound:
            return 0
