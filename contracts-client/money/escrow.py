"""The escrow program as its users see it: one interface, one channel-state type.

Providers read a channel to check it is funded for them before starting a job and settle
receipts; renters open (fund) channels and reclaim the remainder after expiry; the
coordinator and the simulations' stand-in settle receipts in batches through
:class:`~dgpu.contracts_client.money.settler.Settler`. :class:`Escrow` is implemented over
the real program by :class:`~dgpu.contracts_client.money.chain_escrow.ChainEscrow`
(``EscrowClient`` over a LiteSVM or JSON-RPC ``Chain``) and in memory by
:class:`~dgpu.contracts_client.money.memory.MemoryEscrow` (tests and simulations: the same
rules, proven equal operation by operation, no SBPF).

Addresses and keys are raw 32-byte public keys; amounts are base units. The errors are
drawn in :mod:`dgpu.contracts_client.money.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from dgpu.contracts_client.instructions import DEFAULT_BOUNDS, ChannelBounds
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt

READ_CHUNK: Final = 100
"""Channels read at once: ``getMultipleAccounts`` takes at most 100 keys."""


@dataclass(frozen=True)
class ChannelState:
    """A channel account as the chain holds it."""

    address: bytes
    renter: bytes
    provider: bytes
    mint: bytes
    open_nonce: int
    deposit: int
    """Total deposited (opening plus top-ups)."""
    settled: int
    """High-water mark: the highest cumulative receipt settled."""
    expiry: int
    """Unix seconds after which (plus the dispute window) the renter may reclaim."""
    dispute_window: int = 0
    closed: bool = False

    @property
    def remaining(self) -> int:
        return self.deposit - self.settled

    @property
    def reclaimable_at(self) -> int:
        return self.expiry + self.dispute_window


@dataclass(frozen=True)
class OpenedChannel:
    address: bytes
    open_nonce: int
    deposit: int
    expiry: int
    signature: str


@dataclass(frozen=True)
class Settled:
    """A settlement that landed: what it raised each channel's high-water mark to."""

    signature: str
    channels: tuple[tuple[bytes, int], ...]
    """(channel, settled high-water mark after the transaction) per receipt."""


@dataclass(frozen=True)
class Refunded:
    signature: str
    channel: bytes
    amount: int


class Escrow(Protocol):
    """The escrow program as one node uses it (see the module docstring)."""

    @property
    def program_id(self) -> bytes: ...

    async def unix_time(self) -> int:
        """The chain's clock, in Unix seconds."""
        ...

    async def read_channel(self, channel: bytes) -> ChannelState | None:
        """The channel account at ``channel``, or None when there is none."""
        ...

    async def read_channels(self, channels: Sequence[bytes]) -> list[ChannelState | None]:
        """The channel accounts at ``channels`` (at most :data:`READ_CHUNK`), in order; None
        where there is none or the account is not a channel. Raises ChainUnavailable."""
        ...

    async def pack(self, payer: Identity, receipts: Sequence[Receipt]) -> list[list[Receipt]]:
        """Split ``receipts`` (of channels just read) into batches that each fit one settle
        transaction of ``payer``; the chain-backed escrow puts their accounts in address
        lookup tables ``payer`` owns first, so that more fit."""
        ...

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
        """Open and fund a fresh channel paying ``provider`` (the renter pays and signs);
        refused (ChannelRefused) when the platform's fee or dispute window exceeds
        ``bounds``, the terms the renter accepts."""
        ...

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        """Submit one batch (any holder may), all or nothing; pays ``cumulative - settled`` of
        each receipt to its channel's provider, minus the platform fee. Raises
        SettlementRefused (the batch as it is will never land) or ChainUnavailable (it may
        have landed)."""
        ...

    async def refund(self, payer: Identity, channel: bytes) -> Refunded:
        """Return what is left in an expired channel to its renter."""
        ...

    async def token_balance(self, owner: bytes, mint: bytes) -> int:
        """Base units of ``mint`` held by ``owner``'s token account (0 when none)."""
        ...
