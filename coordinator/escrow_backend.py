"""The settlement backend over the real escrow client (``dgpu.contracts_client``).

Packing: a settle transaction carries at most :func:`receipts_per_transaction` receipts
(the Ed25519 precompile's 206 bytes per receipt dominate; an address lookup table saves
the 3 x 32 bytes of account keys per receipt). The backend keeps lookup tables it owns
(authority = the settler key): each channel's (channel, vault, provider token) triple is
added once, the first time the channel is settled, and every later settlement of that
channel reuses it. A table holds 256 addresses; when it is full a new one is started.
Batches never mix tables; channels that could not be added to a table go in plain batches.
Tables live in memory: after a restart new ones are made (the old ones keep their rent).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from dgpu.contracts_client.chain import ChainError, TransactionFailed
from dgpu.contracts_client.errors import (
    AccountDecodeError,
    BatchTooLarge,
    EscrowClientError,
    EscrowProgramError,
)
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.idl import ChannelState
from dgpu.contracts_client.lookup_table import MAX_ADDRESSES
from dgpu.contracts_client.settlement import Settlement, receipts_per_transaction
from dgpu.coordinator.settlement import ChainTrouble, DeterministicFailure, OnChainChannel
from dgpu.coordinator.store import Unsettled
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.sysvar import INSTRUCTIONS
from spl.token.constants import TOKEN_PROGRAM_ID

log = logging.getLogger(__name__)
READ_CHUNK: Final = 100  # getMultipleAccounts takes at most 100 keys
FIXED_ENTRIES: Final = (INSTRUCTIONS, TOKEN_PROGRAM_ID)


class EscrowBackend:
    """:class:`~dgpu.coordinator.settlement.SettlementBackend` over an ``EscrowClient``;
    ``payer`` signs and pays every settlement (and owns the lookup tables)."""

    def __init__(self, escrow: EscrowClient, payer: Keypair, *, lookup_tables: bool = True) -> None:
        self.escrow = escrow
        self.payer = payer
        self.program_id = str(escrow.program_id)
        self.use_lookup_tables = lookup_tables
        self._states: dict[str, ChannelState] = {}
        self._tables: list[AddressLookupTableAccount] = []
        self._table_of: dict[str, int] = {}

    async def read_channels(self, channels: Sequence[str]) -> dict[str, OnChainChannel | None]:
        found: dict[str, OnChainChannel | None] = {}
        for start in range(0, len(channels), READ_CHUNK):
            chunk = list(channels[start : start + READ_CHUNK])
            for address, state in zip(chunk, await self._read(chunk), strict=True):
                if state is None:
                    found[address] = None
                    self._states.pop(address, None)
                    continue
                self._states[address] = state
                found[address] = OnChainChannel(
                    provider=str(state.provider),
                    renter=str(state.renter),
                    open_nonce=state.open_nonce,
                    deposit=state.deposit,
                    settled=state.settled,
                )
        return found

    async def _read(self, chunk: list[str]) -> list[ChannelState | None]:
        keys = [Pubkey.from_string(address) for address in chunk]
        try:
            return await self.escrow.read_channels(keys)
        except AccountDecodeError:
            # Some address is an account of another kind: read one by one, those are None.
            return [await self._read_one(key) for key in keys]
        except ChainError as exc:
            raise ChainTrouble(f"cannot read channels: {exc}") from exc

    async def _read_one(self, key: Pubkey) -> ChannelState | None:
        try:
            (state,) = await self.escrow.read_channels([key])
        except AccountDecodeError:
            return None
        except ChainError as exc:
            raise ChainTrouble(f"cannot read channel {key}: {exc}") from exc
        return state

    async def prepare(self, items: Sequence[Unsettled]) -> list[list[Unsettled]]:
        if self.use_lookup_tables:
            await self._add_to_tables([i for i in items if i.key.channel not in self._table_of])
        groups: dict[int | None, list[Unsettled]] = {}
        for item in items:
            groups.setdefault(self._table_of.get(item.key.channel), []).append(item)
        batches: list[list[Unsettled]] = []
        for table, members in groups.items():
            size = receipts_per_transaction(with_lookup_table=table is not None)
            batches.extend(members[k : k + size] for k in range(0, len(members), size))
        return batches

    async def settle(self, items: Sequence[Unsettled]) -> str:
        settlements = [self._settlement(item) for item in items]
        tables = {self._table_of.get(item.key.channel) for item in items}
        index = tables.pop() if len(tables) == 1 else None
        table = self._tables[index] if index is not None else None
        try:
            signature = await self.escrow.settle_batch(self.payer, settlements, lookup_table=table)
        except EscrowProgramError as exc:
            raise DeterministicFailure(str(exc), permanent=True) from exc
        except (BatchTooLarge, TransactionFailed) as exc:
            raise DeterministicFailure(str(exc), permanent=False) from exc
        except ChainError as exc:
            raise ChainTrouble(str(exc)) from exc
        return str(signature)

    def _settlement(self, item: Unsettled) -> Settlement:
        state = self._states.get(item.key.channel)
        if state is None:
            raise DeterministicFailure("channel state not read before settling", permanent=False)
        return Settlement.for_channel(
            state, item.cumulative, item.renter_sig, program_id=self.escrow.program_id
        )

    async def _add_to_tables(self, items: Sequence[Unsettled]) -> None:
        """Put the triples of ``items`` into lookup tables (best effort: a chain failure
        leaves them out, and they settle in plain batches)."""
        pending = [i for i in items if i.key.channel in self._states]
        while pending:
            if not self._tables or len(self._tables[-1].addresses) + 3 > MAX_ADDRESSES:
                room = (MAX_ADDRESSES - len(FIXED_ENTRIES)) // 3
                batch, pending = pending[:room], pending[room:]
                entries = [*FIXED_ENTRIES, *self._triples(batch)]
                try:
                    table = await self.escrow.create_lookup_table(self.payer, entries)
                except (ChainError, EscrowClientError) as exc:
                    log.warning("cannot create a lookup table: %s", exc)
                    return
                self._tables.append(table)
                log.info("created lookup table %s (%d addresses)", table.key, len(entries))
            else:
                current = self._tables[-1]
                room = (MAX_ADDRESSES - len(current.addresses)) // 3
                batch, pending = pending[:room], pending[room:]
                entries = self._triples(batch)
                try:
                    await self.escrow.extend_lookup_table(self.payer, current.key, entries)
                    table = await self.escrow.read_lookup_table(current.key)
                except (ChainError, EscrowClientError) as exc:
                    log.warning("cannot extend lookup table %s: %s", current.key, exc)
                    return
                self._tables[-1] = table
            for item in batch:
                self._table_of[item.key.channel] = len(self._tables) - 1

    def _triples(self, items: Sequence[Unsettled]) -> list[Pubkey]:
        entries: list[Pubkey] = []
        for item in items:
            state = self._states[item.key.channel]
            settlement = Settlement.for_channel(
                state, item.cumulative, item.renter_sig, program_id=self.escrow.program_id
            )
            entries.extend(settlement.accounts)
        return entries
