"""An in-memory escrow with the program's rules, for simulations and fast tests.

:class:`MemoryLedger` holds token balances and channels; :class:`MemoryEscrow` is one
node's :class:`~dgpu.node.payments.escrow.Escrow` view of it. The rules are the program's:
a channel pays only its provider (minus the platform fee, rounded down) and only up to the
deposit; a receipt must carry the renter's ed25519 signature over the 96-byte layout
bound to this program, this channel and this opening; cumulative receipts settle only the
difference above the high-water mark; the renter reclaims the rest after expiry plus the
dispute window. Time comes from an injected ``now()`` (virtual in simulations).

The tests of the node run against the real program in LiteSVM; this model exists so that
simulations of hundreds of nodes stay cheap.
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
from dgpu.protocol.errors import SignatureError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import verify_receipt


@dataclass
class MemoryLedger:
    """Balances and channels of one in-memory chain."""

    now: Callable[[], int]
    program_id: bytes = hashlib.sha256(b"dgpu-memory-escrow").digest()
    treasury: bytes = hashlib.sha256(b"dgpu-memory-treasury").digest()
    fee_bps: int = 500
    dispute_window: int = 60

    def __post_init__(self) -> None:
        self.balances: dict[tuple[bytes, bytes], int] = {}
        self.channels: dict[bytes, ChannelState] = {}
        self._nonces = itertools.count(1)
        self.transactions = 0

    def mint_to(self, owner: bytes, mint: bytes, amount: int) -> None:
        self.balances[owner, mint] = self.balances.get((owner, mint), 0) + amount

    def balance(self, owner: bytes, mint: bytes) -> int:
        return self.balances.get((owner, mint), 0)

    def _move(self, source: bytes, target: bytes, mint: bytes, amount: int) -> None:
        if amount < 0 or self.balance(source, mint) < amount:
            raise ChannelRefused(f"insufficient funds: {self.balance(source, mint)} < {amount}")
        self.balances[source, mint] = self.balance(source, mint) - amount
        self.balances[target, mint] = self.balance(target, mint) + amount

    def open(
        self, renter: bytes, provider: bytes, mint: bytes, deposit: int, expiry: int
    ) -> ChannelState:
        if deposit <= 0:
            raise ChannelRefused("deposit must be positive")
        if expiry <= self.now():
            raise ChannelRefused("expiry is in the past")
        nonce = next(self._nonces)
        address = hashlib.sha256(b"channel" + renter + provider + nonce.to_bytes(8, "little"))
        state = ChannelState(
            address=address.digest(),
            renter=renter,
            provider=provider,
            mint=mint,
            open_nonce=nonce,
            deposit=deposit,
            settled=0,
            expiry=expiry,
            dispute_window=self.dispute_window,
        )
        self._move(renter, state.address, mint, deposit)
        self.channels[state.address] = state
        self.transactions += 1
        return state

    def settle(self, receipt: Receipt) -> int:
        """Apply one receipt; returns the channel's high-water mark after it."""
        state = self.channels.get(receipt.channel)
        if state is None:
            raise SettlementFailed(f"no channel {receipt.channel.hex()}")
        if state.closed:
            raise SettlementFailed("channel is closed")
        if receipt.program_id != self.program_id:
            raise SettlementFailed("receipt is for another program")
        if receipt.open_nonce != state.open_nonce or receipt.renter != state.renter:
            raise SettlementFailed("receipt is for another opening or renter")
        try:
            verify_receipt(receipt)
        except SignatureError as exc:
            raise SettlementFailed(str(exc)) from exc
        if receipt.cumulative > state.deposit:
            raise SettlementFailed("receipt exceeds the deposit")
        delta = receipt.cumulative - state.settled
        if delta <= 0:
            return state.settled
        fee = delta * self.fee_bps // 10_000
        self._move(state.address, state.provider, state.mint, delta - fee)
        self._move(state.address, self.treasury, state.mint, fee)
        self.channels[state.address] = replace(state, settled=receipt.cumulative)
        return receipt.cumulative

    def refund(self, channel: bytes) -> int:
        state = self.channels.get(channel)
        if state is None:
            raise ChannelNotFound(channel)
        if state.closed:
            raise ChannelRefused("channel already closed")
        if self.now() < state.reclaimable_at:
            raise ChannelRefused(
                f"channel can be reclaimed from {state.reclaimable_at} (now {self.now()})"
            )
        amount = state.deposit - state.settled
        self._move(channel, state.renter, state.mint, amount)
        self.channels[channel] = replace(state, closed=True)
        self.transactions += 1
        return amount


class MemoryEscrow:
    """One node's :class:`~dgpu.node.payments.escrow.Escrow` over a :class:`MemoryLedger`."""

    def __init__(self, ledger: MemoryLedger) -> None:
        self.ledger = ledger
        self._signatures = itertools.count(1)

    @property
    def program_id(self) -> bytes:
        return self.ledger.program_id

    def _signature(self) -> str:
        return f"mem-{next(self._signatures)}"

    async def unix_time(self) -> int:
        await trio.lowlevel.checkpoint()
        return self.ledger.now()

    async def read_channel(self, channel: bytes) -> ChannelState | None:
        await trio.lowlevel.checkpoint()
        return self.ledger.channels.get(channel)

    async def open_channel(
        self, renter: Identity, *, provider: bytes, mint: bytes, deposit: int, expiry: int
    ) -> OpenedChannel:
        await trio.lowlevel.checkpoint()
        state = self.ledger.open(renter.public_key, provider, mint, deposit, expiry)
        return OpenedChannel(state.address, state.open_nonce, deposit, expiry, self._signature())

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        await trio.lowlevel.checkpoint()
        marks = tuple((r.channel, self.ledger.settle(r)) for r in receipts)
        self.ledger.transactions += 1
        return Settled(self._signature(), marks)

    async def refund(self, payer: Identity, channel: bytes) -> Refunded:
        await trio.lowlevel.checkpoint()
        amount = self.ledger.refund(channel)
        return Refunded(self._signature(), channel, amount)

    async def token_balance(self, owner: bytes, mint: bytes) -> int:
        await trio.lowlevel.checkpoint()
        return self.ledger.balance(owner, mint)
