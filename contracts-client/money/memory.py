"""The escrow program's rules as a ledger in memory: fast tests and large simulations.

:class:`MemoryLedger` holds token balances (per owner and mint) and channels and follows
``contracts/escrow.c`` operation by operation; :class:`MemoryEscrow` is one node's
:class:`~dgpu.contracts_client.money.escrow.Escrow` view of it.
``tests/contracts_client/test_money_memory.py``
drives the same random sequences of open / settle / refund (valid and invalid, with clock
warps) through this ledger and through the real program in LiteSVM and compares every
outcome, channel and balance after every step. The rules (``contracts/README.md``):

- **open**: the fee and dispute window are within the renter's bounds, the mint is one of
  the allowed mints, deposit > 0, expiry in the future, the renter holds the deposit; the
  deposit moves to the channel's vault; openings are numbered by one counter (the open
  nonce).
- **settle** (a batch, anyone may submit, all or nothing): each receipt must be signed by
  the channel's renter over the receipt layout of this channel and this opening; one not
  above the settled mark is skipped; one above the deposit fails the batch. Fees are
  ``floor(cumulative * fee_bps / 10_000)`` of the cumulative total, so the provider
  receives ``(cumulative - settled) - (fee(cumulative) - fee(settled))``; fees stay in the
  vault.
- **refund** (anyone, after expiry + dispute window): the fees to the treasury, the rest
  of the vault to the renter, and the channel is deleted.

Time comes from an injected ``now()`` (virtual in simulations and MockClock tests). Every
async call passes one ``anyio`` checkpoint, as a call to a chain would: under trio (and a
MockClock) other tasks run in between, and the ledger stays runtime-neutral for the
asyncio coordinator.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import anyio.lowlevel
from dgpu.contracts_client.instructions import DEFAULT_BOUNDS, ChannelBounds
from dgpu.contracts_client.money.errors import (
    ChannelNotFound,
    ChannelRefused,
    SettlementRefused,
)
from dgpu.contracts_client.money.escrow import (
    ChannelState,
    OpenedChannel,
    Refunded,
    Settled,
)
from dgpu.contracts_client.settlement import receipts_per_transaction
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import verify_receipt

MAX_FEE_BPS = 10_000
INT64_MAX = 2**63 - 1
DEFAULT_PROGRAM_ID = hashlib.sha256(b"dgpu-memory-escrow").digest()
DEFAULT_TREASURY = hashlib.sha256(b"dgpu-memory-treasury").digest()


def fee_of(amount: int, bps: int) -> int:
    """``floor(amount * bps / 10_000)``, as the program computes it."""
    return amount * bps // MAX_FEE_BPS


@dataclass(frozen=True)
class MemoryChannel:
    """A channel account as the ledger holds it: the node's view plus the vault."""

    state: ChannelState
    vault: bytes
    fees: int = 0
    """Fees of the settled total, held in the vault until the channel closes."""
    paid: int = 0
    """Paid out to the provider so far."""


class MemoryLedger:
    """Token balances and channels of one in-memory chain, under the program's rules."""

    def __init__(
        self,
        *,
        now: Callable[[], int],
        mints: Iterable[bytes],
        program_id: bytes = DEFAULT_PROGRAM_ID,
        treasury: bytes = DEFAULT_TREASURY,
        fee_bps: int = 500,
        dispute_window: int = 3600,
    ) -> None:
        self.now = now
        self.mints = frozenset(mints)
        """The mints channels may be opened in (the program's config allows up to 4)."""
        self.program_id = program_id
        self.treasury = treasury
        self.fee_bps = fee_bps
        self.dispute_window = dispute_window
        self.balances: dict[tuple[bytes, bytes], int] = {}
        """Base units per (owner, mint); a vault's owner is its address."""
        self.channels: dict[bytes, MemoryChannel] = {}
        self.transactions = 0
        self._nonce = itertools.count(1)

    def mint_to(self, owner: bytes, mint: bytes, amount: int) -> None:
        """Create ``amount`` new tokens of ``mint`` in ``owner``'s account."""
        self.balances[owner, mint] = self.balance(owner, mint) + amount

    def balance(self, owner: bytes, mint: bytes) -> int:
        return self.balances.get((owner, mint), 0)

    def supply(self, mint: bytes) -> int:
        """Tokens of ``mint`` held anywhere (vaults included)."""
        return sum(amount for (_, m), amount in self.balances.items() if m == mint)

    def state(self, channel: bytes) -> ChannelState | None:
        entry = self.channels.get(channel)
        return None if entry is None else entry.state

    def _move(self, source: bytes, target: bytes, mint: bytes, amount: int) -> None:
        if self.balance(source, mint) < amount:
            raise ChannelRefused(f"insufficient funds: {self.balance(source, mint)} < {amount}")
        self.balances[source, mint] = self.balance(source, mint) - amount
        self.balances[target, mint] = self.balance(target, mint) + amount

    def open(
        self,
        renter: bytes,
        provider: bytes,
        mint: bytes,
        deposit: int,
        expiry: int,
        bounds: ChannelBounds = DEFAULT_BOUNDS,
    ) -> ChannelState:
        if self.fee_bps > bounds.max_fee_bps:
            raise ChannelRefused(f"the fee {self.fee_bps} bps exceeds the renter's bound")
        if self.dispute_window > bounds.max_dispute_window:
            raise ChannelRefused(
                f"the dispute window {self.dispute_window} s exceeds the renter's bound"
            )
        if mint not in self.mints:
            raise ChannelRefused("mint not allowed")
        if deposit <= 0:
            raise ChannelRefused("deposit must be positive")
        if expiry <= self.now() or expiry > INT64_MAX - self.dispute_window:
            raise ChannelRefused("expiry must be in the future")
        if self.balance(renter, mint) < deposit:
            raise ChannelRefused(f"insufficient funds: {self.balance(renter, mint)} < {deposit}")
        nonce = next(self._nonce)
        address = hashlib.sha256(
            b"channel" + self.program_id + renter + provider + nonce.to_bytes(8, "little")
        ).digest()
        state = ChannelState(
            address=address,
            renter=renter,
            provider=provider,
            mint=mint,
            open_nonce=nonce,
            deposit=deposit,
            settled=0,
            expiry=expiry,
            dispute_window=self.dispute_window,
        )
        vault = hashlib.sha256(b"vault" + address).digest()
        self._move(renter, vault, mint, deposit)
        self.channels[address] = MemoryChannel(state, vault)
        self.transactions += 1
        return state

    def settle(self, receipts: Sequence[Receipt]) -> list[tuple[bytes, int]]:
        """Apply a batch, all or nothing; returns each channel's settled mark after it."""
        if not receipts:
            raise SettlementRefused(
                "a settlement batch needs at least one receipt", permanent=False
            )
        staged: dict[bytes, MemoryChannel] = {}
        for receipt in receipts:
            current = staged.get(receipt.channel) or self.channels.get(receipt.channel)
            if current is None:
                raise SettlementRefused(f"no channel {receipt.channel.hex()}", permanent=True)
            state = current.state
            try:
                verify_receipt(receipt)
            except DgpuError as exc:
                raise SettlementRefused(f"receipt signature: {exc}", permanent=True) from exc
            if receipt.renter != state.renter:
                raise SettlementRefused(
                    "receipt is not signed by the channel's renter", permanent=True
                )
            if receipt.open_nonce != state.open_nonce:
                raise SettlementRefused(
                    "receipt is for another opening of the channel", permanent=True
                )
            if receipt.cumulative <= state.settled:
                staged[receipt.channel] = current
                continue
            if receipt.cumulative > state.deposit:
                raise SettlementRefused("receipt exceeds the deposit", permanent=True)
            fees = fee_of(receipt.cumulative, self.fee_bps)
            pay = (receipt.cumulative - state.settled) - (fees - current.fees)
            staged[receipt.channel] = replace(
                current,
                state=replace(state, settled=receipt.cumulative),
                fees=fees,
                paid=current.paid + pay,
            )
        for address, after in staged.items():
            before = self.channels[address]
            provider, mint = after.state.provider, after.state.mint
            self._move(after.vault, provider, mint, after.paid - before.paid)
        self.channels.update(staged)
        self.transactions += 1
        return [(r.channel, self.channels[r.channel].state.settled) for r in receipts]

    def refund(self, channel: bytes) -> int:
        """Close an expired channel: fees to the treasury, the rest to the renter."""
        entry = self.channels.get(channel)
        if entry is None:
            raise ChannelNotFound(channel)
        state = entry.state
        if self.now() < state.reclaimable_at:
            raise ChannelRefused(
                f"channel can be reclaimed from {state.reclaimable_at} (now {self.now()})"
            )
        rest = self.balance(entry.vault, state.mint) - entry.fees
        self._move(entry.vault, self.treasury, state.mint, entry.fees)
        self._move(entry.vault, state.renter, state.mint, rest)
        del self.channels[channel]
        self.transactions += 1
        return rest


class MemoryEscrow:
    """One node's :class:`~dgpu.contracts_client.money.escrow.Escrow` over a
    :class:`MemoryLedger`."""

    def __init__(self, ledger: MemoryLedger) -> None:
        self.ledger = ledger

    @property
    def program_id(self) -> bytes:
        return self.ledger.program_id

    def _signature(self) -> str:
        return f"mem-{self.ledger.transactions}"

    async def unix_time(self) -> int:
        await anyio.lowlevel.checkpoint()
        return self.ledger.now()

    async def read_channel(self, channel: bytes) -> ChannelState | None:
        await anyio.lowlevel.checkpoint()
        return self.ledger.state(channel)

    async def read_channels(self, channels: Sequence[bytes]) -> list[ChannelState | None]:
        await anyio.lowlevel.checkpoint()
        return [self.ledger.state(channel) for channel in channels]

    async def pack(self, payer: Identity, receipts: Sequence[Receipt]) -> list[list[Receipt]]:
        # No lookup tables in memory: batches as large as a plain v0 transaction carries,
        # so that simulations on the ledger see the transaction counts of the real chain.
        await anyio.lowlevel.checkpoint()
        size = receipts_per_transaction(with_lookup_table=False)
        return [list(receipts[k : k + size]) for k in range(0, len(receipts), size)]

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
        await anyio.lowlevel.checkpoint()
        state = self.ledger.open(renter.public_key, provider, mint, deposit, expiry, bounds)
        return OpenedChannel(state.address, state.open_nonce, deposit, expiry, self._signature())

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        await anyio.lowlevel.checkpoint()
        marks = self.ledger.settle(receipts)
        return Settled(self._signature(), tuple(marks))

    async def refund(self, payer: Identity, channel: bytes) -> Refunded:
        await anyio.lowlevel.checkpoint()
        amount = self.ledger.refund(channel)
        return Refunded(self._signature(), channel, amount)

    async def token_balance(self, owner: bytes, mint: bytes) -> int:
        await anyio.lowlevel.checkpoint()
        return self.ledger.balance(owner, mint)
