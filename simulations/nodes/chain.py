"""Where the money of a simulation lives: the escrow program in LiteSVM, or the ledger.

``litesvm``: the real escrow ``.so`` executed by LiteSVM, its clock following the
simulation's virtual clock, a dGPU mint with every node's token account, each node using
:class:`~dgpu.contracts_client.money.ChainEscrow` (:mod:`.svm`). ``ledger``:
:class:`~dgpu.contracts_client.money.MemoryLedger`, the node's in-memory escrow (its tests
prove it agrees with the program operation by operation). ``auto`` picks LiteSVM up to
``chain.litesvm_max_nodes`` nodes.

Either way every node's escrow is wrapped by :class:`Observed`, which records the
channels opened, settled and refunded for the accounting (it changes nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dgpu.contracts_client.money import (
    DEFAULT_BOUNDS,
    ChannelBounds,
    ChannelState,
    Escrow,
    MemoryEscrow,
    MemoryLedger,
    OpenedChannel,
    Refunded,
    Settled,
)
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.simulations.scenario import Scenario

DISPUTE_WINDOW_S = 3600
FEE_BPS = 500


@dataclass
class ChannelRecord:
    address: bytes
    renter: bytes
    provider: bytes
    deposit: int
    expiry: int
    settled: int = 0
    refunded: int | None = None


@dataclass
class ChainLog:
    """What the simulation saw happen on chain."""

    channels: dict[bytes, ChannelRecord] = field(default_factory=dict)
    settlements: list[tuple[bytes, int]] = field(default_factory=list)
    """(payer, receipts) of every settlement transaction that landed."""


class Observed:
    """An :class:`Escrow` that records what went through it into a :class:`ChainLog`."""

    def __init__(self, inner: Escrow, log: ChainLog) -> None:
        self._inner = inner
        self._log = log

    @property
    def program_id(self) -> bytes:
        return self._inner.program_id

    async def unix_time(self) -> int:
        return await self._inner.unix_time()

    async def read_channel(self, channel: bytes) -> ChannelState | None:
        return await self._inner.read_channel(channel)

    async def read_channels(self, channels: Sequence[bytes]) -> list[ChannelState | None]:
        return await self._inner.read_channels(channels)

    async def pack(self, payer: Identity, receipts: Sequence[Receipt]) -> list[list[Receipt]]:
        return await self._inner.pack(payer, receipts)

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
        opened = await self._inner.open_channel(
            renter, provider=provider, mint=mint, deposit=deposit, expiry=expiry, bounds=bounds
        )
        self._log.channels[opened.address] = ChannelRecord(
            opened.address, renter.public_key, provider, opened.deposit, opened.expiry
        )
        return opened

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        settled = await self._inner.settle(payer, receipts)
        for channel, mark in settled.channels:
            record = self._log.channels.get(channel)
            if record is not None:
                record.settled = max(record.settled, mark)
        self._log.settlements.append((payer.public_key, len(receipts)))
        return settled

    async def refund(self, payer: Identity, channel: bytes) -> Refunded:
        refunded = await self._inner.refund(payer, channel)
        record = self._log.channels.get(channel)
        if record is not None:
            record.refunded = refunded.amount
        return refunded

    async def token_balance(self, owner: bytes, mint: bytes) -> int:
        return await self._inner.token_balance(owner, mint)


class SimChain(Protocol):
    """The chain of one simulation."""

    backend: str
    """``"litesvm"`` or ``"ledger"``."""
    mint: bytes
    program_id: bytes
    treasury: bytes
    coordinator: Identity
    log: ChainLog
    minted: int

    def escrow(self) -> Escrow:
        """A fresh escrow view for one node (observed)."""
        ...

    async def fund(
        self, renters: Sequence[Identity], payers: Sequence[Identity], balance: int
    ) -> None:
        """Give each renter ``balance`` tokens and every node a token account (and fees)."""
        ...

    async def balance(self, owner: bytes) -> int:
        """Tokens held by ``owner``'s token account."""
        ...

    async def supply(self) -> int:
        """Tokens of the mint in existence."""
        ...


class LedgerChain:
    backend = "ledger"

    def __init__(self, now: Callable[[], int], coordinator: Identity, treasury: bytes) -> None:
        self.mint = hashlib.sha256(b"dgpu-sim/mint").digest()
        self.program_id = hashlib.sha256(b"dgpu-sim/escrow-ledger").digest()
        self.treasury = treasury
        self.coordinator = coordinator
        self.log = ChainLog()
        self.minted = 0
        self.ledger = MemoryLedger(
            now=now,
            mints=[self.mint],
            program_id=self.program_id,
            treasury=treasury,
            fee_bps=FEE_BPS,
            dispute_window=DISPUTE_WINDOW_S,
        )

    def escrow(self) -> Escrow:
        return Observed(MemoryEscrow(self.ledger), self.log)

    async def fund(
        self, renters: Sequence[Identity], payers: Sequence[Identity], balance: int
    ) -> None:
        for renter in renters:
            self.ledger.mint_to(renter.public_key, self.mint, balance)
            self.minted += balance

    async def balance(self, owner: bytes) -> int:
        return self.ledger.balance(owner, self.mint)

    async def supply(self) -> int:
        return self.ledger.supply(self.mint)


async def open_chain(scenario: Scenario, now: Callable[[], int]) -> SimChain:
    backend = scenario.chain.backend
    if backend == "auto":
        backend = "litesvm" if scenario.nodes <= scenario.chain.litesvm_max_nodes else "ledger"
    coordinator = Identity.from_label("sim/coordinator")
    treasury = Identity.from_label("sim/treasury").public_key
    if backend == "litesvm":
        from dgpu.simulations.nodes.svm import SvmChain

        return await SvmChain.open(now, coordinator=coordinator, treasury=treasury)
    return LedgerChain(now, coordinator, treasury)
