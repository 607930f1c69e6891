"""What the node's roles need from the escrow program: one small interface.

The provider reads a channel to check it is funded for it before starting a job, and
submits receipts; the renter opens (funds) a channel and reclaims the remainder after
expiry. :class:`Escrow` is implemented over the real program by
:class:`~dgpu.node.payments.chain.ChainEscrow` (``dgpu.contracts_client``' ``EscrowClient`` over a
LiteSVM or JSON-RPC ``Chain``) and in memory by
:class:`~dgpu.node.payments.memory.MemoryEscrow` (tests and simulations: the same rules,
proven equal operation by operation, no SBPF).

Addresses and keys are raw 32-byte public keys; amounts are base units.

Errors::

    DgpuError
    └── PaymentError             root of dgpu.node.payments
        ├── ChannelNotFound      no channel account at that address
        ├── ChannelRefused       the escrow refused an operation (with its reason)
        └── SettlementFailed     a settlement transaction failed
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt


class PaymentError(DgpuError):
    """Root of the errors of :mod:`dgpu.node.payments`."""


class ChannelNotFound(PaymentError):
    def __init__(self, channel: bytes) -> None:
        super().__init__(f"no escrow channel at {channel.hex()}")
        self.channel = channel


class ChannelRefused(PaymentError):
    """The escrow program (or its in-memory model) refused the operation."""


class SettlementFailed(PaymentError):
    """A settlement could not be submitted or failed on chain."""


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

    async def open_channel(
        self, renter: Identity, *, provider: bytes, mint: bytes, deposit: int, expiry: int
    ) -> OpenedChannel:
        """Open and fund a fresh channel paying ``provider`` (the renter pays and signs)."""
        ...

    async def settle(self, payer: Identity, receipts: Sequence[Receipt]) -> Settled:
        """Submit receipts (any holder may); pays ``cumulative - settled`` of each to its
        channel's provider, minus the platform fee. Receipts that add nothing are skipped
        by the caller, not here."""
        ...

    async def refund(self, payer: Identity, channel: bytes) -> Refunded:
        """Return what is left in an expired channel to its renter."""
        ...

    async def token_balance(self, owner: bytes, mint: bytes) -> int:
        """Base units of ``mint`` held by ``owner``'s token account (0 when none)."""
        ...
