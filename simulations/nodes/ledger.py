"""The escrow program's rules as a ledger in memory, for simulations too large for LiteSVM.

It follows ``contracts/escrow.c`` operation by operation, and
``tests/simulations/test_ledger_equivalence.py`` drives the same random sequences of
open / settle / refund (valid and invalid) through this ledger and through the real
program in LiteSVM and compares every outcome, channel and balance:

- **open**: deposit > 0, expiry in the future, the renter holds the deposit; the deposit
  moves to the channel's vault; openings are numbered by one counter (the open nonce).
- **settle** (a batch, all or nothing): each receipt must be signed by the channel's
  renter over the receipt layout of this channel and this opening; one not
  above the settled mark is skipped; one above the deposit fails the batch. Fees are
  ``floor(settled * fee_bps / 10_000)`` of the cumulative total, so the provider receives
  ``(cumulative - settled) - (fees - fees_before)``; fees stay in the vault.
- **refund** (anyone, after expiry + dispute window): fees to the treasury, the rest of
  the vault to the renter, and the channel is deleted.

:class:`LedgerEscrow` is one node's :class:`~dgpu.node.payments.escrow.Escrow` view of it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import trio
from dgpu.node.payments.escrow import (
    ChannelNotFound,
    ChannelRefused,
    ChannelState,
    OpenedChannel,
    Refunded,
    Settled,
    SettlementFailed,
)
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import verify_receipt

MAX_FEE_BPS = 10_000


def fee_of(amount: int, bps: int) -> int:
    """``floor(amount * bps / 10_000)``, as the program computes it."""
    return amount * bps // MAX_FEE_BPS


@dataclass(frozen=True)
class LedgerChannel:
    state: ChannelState
    vault: bytes
    fees: int = 0
    paid: int = 0


class EscrowLedger:
    """Token balances (one mint) and channels, under the program's rules."""

    def __init__(
        self,
        *,
        now: Callable[[], int],
        program_id: bytes,
        mint: bytes,
        treasury: bytes,
        fee_bps: int = 500,
        dispute_window: int = 3600,
    ) -> None:
        self.now = now
        self.program_id = program_id
        self.mint = mint
        self.treasury = treasury
        self.fee_bps = fee_bps
        self.dispute_window = dispute_window
        self.balances: dict[bytes, int] = {}
        self.channels: dict[bytes, LedgerChannel] = {}
        self.minted = 0
        self._nonce = itertools.count(1)
        self.transactions = 0

    def mint_to(self, owner: bytes, amount: int) -> None:
        self.balances[owner] = self.balances.get(owner, 0) + amount
        self.minted += amount

    def balance(self, owner: bytes) -> int:
        return self.balances.get(owner, 0)

    def _move(self, source: bytes, target: bytes, amount: int) -> None:
        if self.balance(source) < amount:
            raise ChannelRefused(f"insufficient funds: {self.balance(source)} < {amount}")
        self.balances[source] = self.balance(source) - amount
        self.balances[target] = self.balance(target) + amount

    def open(self, renter: bytes, provider: bytes, deposit: int, expiry: int) -> ChannelState:
        if deposit <= 0:
            raise ChannelRefused("deposit must be positive")
        if expiry <= self.now():
            raise ChannelRefused("expiry must be in the future")
        if self.balance(renter) < deposit:
            raise ChannelRefused(f"insufficient funds: {self.balance(renter)} < {deposit}")
        nonce = next(self._nonce)
        address = hashlib.sha256(b"channel" + renter + provider + nonce.to_bytes(8, "little"))
        vault = hashlib.sha256(b"vault" + address.digest()).digest()
        state = ChannelState(
            address=address.digest(),
            renter=renter,
            provider=provider,
            mint=self.mint,
            open_nonce=nonce,
            deposit=deposit,
            settled=0,
            expiry=expiry,
            dispute_window=self.dispute_window,
        )
        self._move(renter, vault, deposit)
        self.channels[state.address] = LedgerChannel(state, vault)
        self.transactions += 1
        return state

    def settle(self, receipts: Sequence[Receipt]) -> list[tuple[bytes, int]]:
        """Apply a batch, all or nothing; returns each channel's settled mark after it."""
        if not receipts:
            raise SettlementFailed("a settlement batch needs at least one receipt")
        staged: dict[bytes, LedgerChannel] = {}
        payouts: list[tuple[bytes, bytes, int]] = []
        for receipt in receipts:
            current = staged.get(receipt.channel) or self.channels.get(receipt.channel)
            if current is None:
                raise SettlementFailed(f"no channel {receipt.channel.hex()}")
            state = current.state
            try:
                verify_receipt(receipt)
            except DgpuError as exc:
                raise SettlementFailed(f"receipt signature: {exc}") from exc
            if receipt.renter != state.renter:
                raise SettlementFailed("receipt is not signed by the channel's renter")
            if receipt.open_nonce != state.open_nonce:
                raise SettlementFailed("receipt is for another opening of the channel")
            if receipt.cumulative <= state.settled:
                staged[receipt.channel] = current
                continue
            if receipt.cumulative > state.deposit:
                raise SettlementFailed("receipt exceeds the deposit")
            fees = fee_of(receipt.cumulative, self.fee_bps)
            pay = (receipt.cumulative - state.settled) - (fees - current.fees)
            staged[receipt.channel] = replace(
                current,
                state=replace(state, settled=receipt.cumulative),
                fees=fees,
                paid=current.paid + pay,
            )
            payouts.append((current.vault, state.provider, pay))
        for vault, provider, pay in payouts:
            self._move(vault, provider, pay)
        self.channels.update(staged)
        self.transactions += 1
        return [(r.channel, self.channels[r.channel].state.settled) for r in receipts]

    def refund(self, channel: bytes) -> int:
        """Close an expired channel: fees to the treasury, the rest to the renter."""
        entry = self.channels.get(channel)
        if entry is None:
            raise ChannelNotFound(channel)
        state = entry.state
        if self.now() < state.expiry + state.dispute_window:
            raise ChannelRefused(
                f"channel can be reclaimed from {state.expiry + state.dispute_window}"
            )
        held = self.balance(entry.vault)
        refund = held - entry.fees
        self._move(entry.vault, self.treasury, entry.fees)
        self._move(entry.vault, state.renter, refund)
        del self.channels[channel]
        self.transactions += 1
        return refund


class LedgerEscrow:
    """One node's :class:`~dgpu.node.payments.escrow.Escrow` over an :class:`EscrowLedger`."""

    def __init__(self, ledger: EscrowLedger) -> None:
        self.ledger = ledger

    @property
    def program_id(self) -> bytes:
        return self.ledger.program_id

    def _signature(self) -> str:
        return f"ledger-{self.ledger.transactions}"

    async def unix_time(self) -> int:
        await trio.lowlevel.checkpoint()
        return self.ledger.now()

    async def read_channel(self, channel: bytes) -> ChannelState | None:
        await trio.lowlevel.checkpoint()
        entry = self.ledger.channels.get(channel)
        return None if entry is None else entry.state

    async def open_channel(
        self, renter: Identity, *, provider: bytes, mint: bytes, deposit: int, expiry: int
    ) -> OpenedChannel:
        await trio.lowlevel.checkpoint()
        if mint != self.ledger.mint:
            raise ChannelRefused("mint not allowed")
        state = self.ledger.open(renter.public_key, provider, deposit, expiry)
        return OpenedChannel(state.address, state.open_nonce, deposit, expiry, self._signature())

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        await trio.lowlevel.checkpoint()
        marks = self.ledger.settle(receipts)
        return Settled(self._signature(), tuple(marks))

    async def refund(self, payer: Identity, channel: bytes) -> Refunded:
        await trio.lowlevel.checkpoint()
        amount = self.ledger.refund(channel)
        return Refunded(self._signature(), channel, amount)

    async def token_balance(self, owner: bytes, mint: bytes) -> int:
        await trio.lowlevel.checkpoint()
        return self.ledger.balance(owner) if mint == self.ledger.mint else 0
