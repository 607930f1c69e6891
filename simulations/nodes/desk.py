"""A stand-in for the coordinator, as the nodes of a simulation see it.

The simulation may not use the coordinator's internals, so this plays its part through
the interface the provider uses (:class:`~dgpu.node.provider.OfferDesk`): it keeps an
index of offers (renters search it when the coordinator is up), publishes reference
prices computed by :func:`dgpu.pricing.reference_prices` from that book and the recent
agreements, and every ``batch_interval_s`` settles the receipts providers hand it through
the same :class:`~dgpu.contracts_client.money.Settler` as the real coordinator (packed by
the escrow, at most ``max_receipts_per_tx`` per transaction, a refused batch bisected),
over :class:`DeskJournal`, its book kept in memory.

Modes (``[settlement] coordinator``): ``up``; ``down`` (every call fails, providers and
renters must do without it); ``censor`` (it takes the receipts of a share of the
providers and silently never settles them).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from dgpu.contracts_client.money import (
    Claim,
    Escrow,
    OpenBatch,
    Opening,
    Outcome,
    SetAside,
    Settler,
)
from dgpu.contracts_client.settlement import batch_size
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


class DeskJournal:
    """The settler's journal of the stand-in: the receipts handed to it and the marks
    the chain showed, in memory (a simulated coordinator does not crash mid-batch)."""

    def __init__(self, log: SettlementLog) -> None:
        self.log = log
        self.pending: dict[bytes, Receipt] = {}
        """The highest receipt handed over, per channel."""
        self.marks: dict[bytes, int] = {}
        """The settled mark the chain showed, per channel."""
        self.refused: dict[bytes, str] = {}
        """Channels set aside: the program refused the receipt, or the channel is gone."""
        self._batches: dict[int, int] = {}

    def take(self, receipt: Receipt) -> None:
        held = self.pending.get(receipt.channel)
        if held is None or receipt.cumulative > held.cumulative:
            self.pending[receipt.channel] = receipt
            self.refused.pop(receipt.channel, None)  # a higher receipt gets a fresh chance

    async def claims(self) -> Sequence[Claim]:
        await trio.lowlevel.checkpoint()
        return [
            Claim(r, settled=self.marks.get(c, 0))
            for c, r in sorted(self.pending.items())
            if r.cumulative > self.marks.get(c, 0) and c not in self.refused
        ]

    async def chain_mark(self, claim: Claim, settled: int) -> None:
        self._raise(claim.receipt.channel, settled)

    async def eligible(self, claim: Claim) -> None:
        return None

    async def set_aside(self, claim: Claim, reason: SetAside, note: str) -> None:
        # Never settles as it is (the program refused it, the channel is gone); the rest
        # is retried at the next flush.
        if reason in ("rejected", "missing"):
            self.refused[claim.receipt.channel] = note

    async def open_batch(self, claims: Sequence[Claim]) -> int:
        batch_id = len(self._batches)
        self._batches[batch_id] = len(claims)
        return batch_id

    async def batch_sent(self, batch_id: int, signature: str) -> None:
        return None

    async def close_batch(
        self, batch_id: int, outcome: Outcome, marks: Mapping[Opening, int], error: str
    ) -> None:
        for (channel, _), mark in marks.items():
            self._raise(channel, mark)
        if outcome == "failed":
            self.log.failed += 1
            log.info("coordinator batch of %d failed: %s", self._batches[batch_id], error)
        else:
            self.log.by_coordinator.append(self._batches[batch_id])

    async def open_batches(self) -> Sequence[OpenBatch]:
        return []

    def _raise(self, channel: bytes, mark: int) -> None:
        self.marks[channel] = max(mark, self.marks.get(channel, 0))


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
        self.rentals: deque[tuple[int, Rental]] = deque()
        self.log = SettlementLog()
        self.journal = DeskJournal(self.log)
        self.settler = Settler(
            escrow, identity, self.journal, max_receipts_per_tx=spec.max_receipts_per_tx
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
        self.journal.take(receipt)

    async def post_receipts(self, receipts: Sequence[Receipt]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for receipt in receipts:
            await self.post_receipt(receipt)
            results.append({"status": "accepted"})
        return results

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
        await self.settler.run_once()


class SimIndex:
    """The renters' :class:`~dgpu.node.renter.discovery.OfferIndex` over the stand-in (it
    fails when the coordinator is down, and the renter falls back to the DHT)."""

    def __init__(self, desk: SimCoordinator) -> None:
        self.desk = desk

    async def search(self, query: OfferQuery) -> list[Candidate]:
        await trio.lowlevel.checkpoint()
        offers = self.desk.search(query.model, self.desk.clock())
        return [Candidate(offer, 0.0, "coordinator") for offer in offers]
