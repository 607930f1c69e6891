"""The coordinator's settlement: the one settler (:mod:`dgpu.contracts_client.money`) over
the coordinator's store, with its intake check and metrics.

What this module adds to :class:`~dgpu.contracts_client.money.Settler`:

- :class:`StoreJournal`, the settler's journal over the sqlite/PostgreSQL store: claims are
  the highest unsettled receipt per channel opening (``channels``), batches are the
  ``batches`` / ``batch_items`` rows, written ``pending`` before a transaction is sent so
  that a crash leaves them to :meth:`CoordinatorSettler.reconcile`;
- :meth:`CoordinatorSettler.check_intake`, the check of a posted receipt against the chain;
- the metrics (batches by outcome, amount settled, chain failures).

Errors::

    DgpuError
    └── CoordinatorError (dgpu.coordinator.errors)
        └── SettlementError
            └── IntakeRefused     a posted receipt the chain contradicts (``code`` says how;
                                  the API maps it to 403/422)

The chain's own errors are the money seam's (``ChainUnavailable`` when a round cannot read
the chain: the API answers 503).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dgpu.contracts_client.money import (
    BatchItem,
    ChainUnavailable,
    ChannelState,
    Claim,
    Escrow,
    OpenBatch,
    Opening,
    Outcome,
    RoundReport,
    SetAside,
    Settler,
)
from dgpu.coordinator.errors import SettlementError
from dgpu.coordinator.metrics import Metrics
from dgpu.coordinator.store import ChannelKey, Store, Unsettled
from dgpu.protocol.identity import Identity, address_of, public_key_of_address
from dgpu.protocol.messages import Receipt

log = logging.getLogger(__name__)

_MARKS: dict[SetAside, str] = {
    "missing": "missing",
    "rejected": "rejected",
    "above_deposit": "open",  # a top-up may make it settle
    "failed": "open",  # not the receipt's fault: retried next round
}
"""The ``channels.state`` a claim set aside is left in."""


class IntakeRefused(SettlementError):
    """A posted receipt the chain contradicts. ``code``: ``wrong_program``,
    ``unknown_channel``, ``not_channel_provider``, ``wrong_renter``, ``wrong_opening``."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SettlementBackend:
    """The escrow the coordinator settles through, and the key that pays every settlement
    (and owns the lookup tables)."""

    escrow: Escrow
    payer: Identity

    @property
    def program_id(self) -> str:
        """Base58 id of the escrow program whose channels this coordinator settles."""
        return address_of(self.escrow.program_id)


def _key(opening: Opening) -> ChannelKey:
    return ChannelKey(address_of(opening[0]), opening[1])


class StoreJournal:
    """The settler's journal over the coordinator's store (see the module docstring)."""

    def __init__(
        self, store: Store, metrics: Metrics, *, clock: Callable[[], float], limit: int
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.limit = limit
        self._rows: dict[Opening, Unsettled] = {}

    def _now(self) -> int:
        return int(self.clock())

    async def claims(self) -> Sequence[Claim]:
        rows = await self.store.channels.unsettled(self.limit)
        claims = [
            Claim(u.receipt(), provider=public_key_of_address(u.provider), settled=u.settled)
            for u in rows
        ]
        self._rows = {c.opening: u for c, u in zip(claims, rows, strict=True)}
        return claims

    async def chain_mark(self, claim: Claim, settled: int) -> None:
        await self.store.channels.set_settled(_key(claim.opening), settled, self._now())

    async def eligible(self, claim: Claim) -> None:
        await self.store.channels.mark(_key(claim.opening), state="open", note="")

    async def set_aside(self, claim: Claim, reason: SetAside, note: str) -> None:
        await self.store.channels.mark(_key(claim.opening), state=_MARKS[reason], note=note)

    async def open_batch(self, claims: Sequence[Claim]) -> int:
        return await self.store.channels.create_batch(
            [self._rows[c.opening] for c in claims], self._now()
        )

    async def batch_sent(self, batch_id: int, signature: str) -> None:
        await self.store.channels.set_submitted(batch_id, signature)

    async def close_batch(
        self, batch_id: int, outcome: Outcome, marks: Mapping[Opening, int], error: str
    ) -> None:
        await self.store.channels.finish_batch(
            batch_id,
            state=outcome,
            settled_after={_key(opening): mark for opening, mark in marks.items()},
            now=self._now(),
            error=error,
        )
        self.metrics.batches.labels(outcome).inc()

    async def open_batches(self) -> Sequence[OpenBatch]:
        return [
            OpenBatch(
                batch_id,
                signature,
                [
                    BatchItem(public_key_of_address(key.channel), key.open_nonce, cumulative)
                    for key, cumulative in items
                ],
            )
            for batch_id, signature, items in await self.store.channels.open_batches()
        ]


class CoordinatorSettler:
    """Settlement rounds over the store (:class:`StoreJournal`), metered, and the intake
    check."""

    def __init__(
        self,
        store: Store,
        backend: SettlementBackend,
        metrics: Metrics,
        *,
        clock: Callable[[], float],
        max_channels_per_round: int = 5000,
    ) -> None:
        self.store = store
        self.backend = backend
        self.metrics = metrics
        self.journal = StoreJournal(store, metrics, clock=clock, limit=max_channels_per_round)
        self.settler = Settler(backend.escrow, backend.payer, self.journal)

    async def check_intake(self, receipt: Receipt, provider: str, *, read_chain: bool) -> None:
        """Refuse (:class:`IntakeRefused`) a receipt of another program or (``read_chain``)
        whose channel on chain belongs to someone else or that claims more than the
        channel's deposit. A chain that cannot be read refuses the receipt for now
        (``chain_unavailable``: the provider posts it again later) rather than admitting
        what nobody checked."""
        (refusal,) = await self.check_intake_many([receipt], provider, read_chain=read_chain)
        if refusal is not None:
            raise refusal

    async def check_intake_many(
        self, receipts: Sequence[Receipt], provider: str, *, read_chain: bool
    ) -> list[IntakeRefused | None]:
        """:meth:`check_intake` for many receipts, reading their channels together (100
        per request); the refusal of each receipt in its place. A chain that cannot be
        read raises ``chain_unavailable`` for the lot."""
        program_id = self.backend.program_id
        found: dict[bytes, ChannelState | None] = {}
        if read_chain:
            wanted = sorted({r.channel for r in receipts if address_of(r.program_id) == program_id})
            try:
                found = await self.settler.read(wanted)
            except ChainUnavailable as exc:
                log.warning("cannot check %d channels on chain at intake: %s", len(wanted), exc)
                raise IntakeRefused(
                    "cannot read the channels on chain now; post the receipts again later",
                    "chain_unavailable",
                ) from exc
        return [self._refusal(r, provider, found, read_chain=read_chain) for r in receipts]

    def _refusal(
        self,
        receipt: Receipt,
        provider: str,
        found: Mapping[bytes, ChannelState | None],
        *,
        read_chain: bool,
    ) -> IntakeRefused | None:
        channel = address_of(receipt.channel)
        program_id = self.backend.program_id
        if address_of(receipt.program_id) != program_id:
            return IntakeRefused(
                f"this coordinator settles channels of program {program_id}", "wrong_program"
            )
        if not read_chain:
            return None
        state = found.get(receipt.channel)
        if state is None:
            return IntakeRefused(f"no open channel {channel} on chain", "unknown_channel")
        if address_of(state.provider) != provider:
            return IntakeRefused(
                "the channel on chain names another provider", "not_channel_provider"
            )
        if state.renter != receipt.renter:
            return IntakeRefused("the channel on chain names another renter", "wrong_renter")
        if state.open_nonce != receipt.open_nonce:
            return IntakeRefused(
                f"the channel's opening on chain is {state.open_nonce}, not {receipt.open_nonce}",
                "wrong_opening",
            )
        if receipt.cumulative > state.deposit:
            return IntakeRefused(
                f"the receipt claims {receipt.cumulative}, above the channel's deposit "
                f"{state.deposit}",
                "above_deposit",
            )
        return None

    async def reconcile(self) -> int:
        """Close batches a crash left open, from the chain's settled marks."""
        return await self.settler.reconcile()

    async def run_once(self) -> RoundReport:
        """One round (see :class:`~dgpu.contracts_client.money.Settler`), metered."""
        report = await self.settler.run_once()
        if report.unavailable:
            self.metrics.failures.labels("settlement").inc(report.unavailable)
        if report.amount:
            self.metrics.settled_amount.inc(report.amount)
        return report


__all__ = [
    "CoordinatorSettler",
    "IntakeRefused",
    "SettlementBackend",
    "StoreJournal",
]
