"""A stand-in for the coordinator, as the nodes of a simulation see it.

The simulation may not use the coordinator's internals, so this plays its part through
the interface the provider uses (:class:`~dgpu.node.provider.OfferDesk`): it keeps an
index of offers (renters search it when the coordinator is up), publishes reference
prices computed by :func:`dgpu.pricing.reference_prices` from that book and the recent
agreements, and batches the receipts providers hand it into settlement transactions
through the escrow, ``max_receipts_per_tx`` per transaction, every ``batch_interval_s``.

Modes (``[settlement] coordinator``): ``up``; ``down`` (every call fails, providers and
renters must do without it); ``censor`` (it takes the receipts of a share of the
providers and silently never settles them).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from dgpu.contracts_client.settlement import batch_size, receipts_per_transaction
from dgpu.node.payments.escrow import Escrow, PaymentError
from dgpu.node.renter.discovery import Candidate, OfferQuery
from dgpu.pricing import ReferencePrice, reference_prices
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer, Receipt
from dgpu.simulations.errors import SimulationError
from dgpu.simulations.scenario import SettlementSpec

log = logging.getLogger(__name__)


class CoordinatorUnavailable(SimulationError):
    """The simulated coordinator is down."""


@dataclass(frozen=True)
class Rental:
    gpu_model: str
    gpu_count: int


@dataclass
class SettlementLog:
    """Every settlement transaction of the run, by whom and how big."""

    by_coordinator: list[int] = field(default_factory=list)
    """Receipts per coordinator transaction."""
    by_providers: list[int] = field(default_factory=list)
    failed: int = 0

    def bytes_of(self, receipts: int) -> int:
        return tx_bytes(receipts)


_SIZES: dict[int, int] = {}


def tx_bytes(receipts: int) -> int:
    """Bytes of a settlement transaction of ``receipts`` receipts (v0, no lookup table), as
    :mod:`dgpu.contracts_client.settlement` builds it."""
    if receipts not in _SIZES:
        _SIZES[receipts] = batch_size(receipts, with_lookup_table=False)
    return _SIZES[receipts]


class SimCoordinator:
    """The coordinator stand-in (see the module docstring)."""

    def __init__(
        self,
        spec: SettlementSpec,
        *,
        identity: Identity,
        escrow: Escrow,
        censored: frozenset[bytes],
        clock: Callable[[], int],
        demand_window_s: int,
    ) -> None:
        self.spec = spec
        self.identity = identity
        self.escrow = escrow
        self.censored = censored
        self.clock = clock
        self.demand_window_s = demand_window_s
        self.offers: dict[bytes, Offer] = {}
        self.pending: dict[bytes, Receipt] = {}
        self.marks: dict[bytes, int] = {}
        self.rentals: deque[tuple[int, Rental]] = deque()
        self.log = SettlementLog()
        self.batch = min(
            spec.max_receipts_per_tx, receipts_per_transaction(with_lookup_table=False)
        )
        self.dropped = 0

    @property
    def up(self) -> bool:
        return self.spec.coordinator != "down"

    def _check_up(self) -> None:
        if not self.up:
            raise CoordinatorUnavailable("the coordinator is down")

    # -- OfferDesk (what providers call) ------------------------------------------------

    async def post_offer(self, offer: Offer) -> None:
        await trio.lowlevel.checkpoint()
        self._check_up()
        self.offers[offer.provider] = offer

    async def post_receipt(self, receipt: Receipt) -> None:
        await trio.lowlevel.checkpoint()
        self._check_up()
        if self.spec.coordinator == "censor":
            state = await self.escrow.read_channel(receipt.channel)
            if state is None or state.provider in self.censored:
                self.dropped += 1
                return
        held = self.pending.get(receipt.channel)
        if held is None or receipt.cumulative > held.cumulative:
            self.pending[receipt.channel] = receipt

    # -- what renters and operators ask ------------------------------------------------

    def search(self, model: str, now: int) -> list[Offer]:
        self._check_up()
        return [o for o in self.offers.values() if o.gpu_model == model and o.expires_at > now]

    def record_rental(self, rental: Rental, now: int) -> None:
        self.rentals.append((now, rental))

    def prices(self, now: int) -> dict[str, ReferencePrice]:
        while self.rentals and self.rentals[0][0] <= now - self.demand_window_s:
            self.rentals.popleft()
        live = [o for o in self.offers.values() if o.expires_at > now]
        return reference_prices(live, [r for _, r in self.rentals])

    # -- the batcher -------------------------------------------------------------------

    async def run_batcher(self) -> None:
        while True:
            await trio.sleep(self.spec.batch_interval_s)
            await self.flush()

    async def flush(self) -> None:
        if not self.up:
            return
        due = sorted(
            (r for c, r in self.pending.items() if r.cumulative > self.marks.get(c, 0)),
            key=lambda r: r.channel,
        )
        for start in range(0, len(due), self.batch):
            group = due[start : start + self.batch]
            if await self._settle(group):
                continue
            for receipt in group:  # one bad channel must not block the others
                await self._settle([receipt])

    async def _settle(self, group: list[Receipt]) -> bool:
        try:
            settled = await self.escrow.settle(self.identity, group)
        except PaymentError as exc:
            self.log.failed += 1
            log.info("coordinator batch of %d failed: %s", len(group), exc)
            return False
        for channel, mark in settled.channels:
            self.marks[channel] = max(mark, self.marks.get(channel, 0))
        self.log.by_coordinator.append(len(group))
        return True


class SimIndex:
    """The renters' :class:`~dgpu.node.renter.discovery.OfferIndex` over the stand-in (it
    fails when the coordinator is down, and the renter falls back to the DHT)."""

    def __init__(self, desk: SimCoordinator) -> None:
        self.desk = desk

    async def search(self, query: OfferQuery) -> list[Candidate]:
        await trio.lowlevel.checkpoint()
        offers = self.desk.search(query.model, self.desk.clock())
        return [Candidate(offer, 0.0, "coordinator") for offer in offers]
