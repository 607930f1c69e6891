"""The one settler: the latest receipt per channel opening, checked against the chain,
packed into few transactions, sent, recorded, reconciled after a crash.

A round::

    journal's claims ──read on chain (chunks of 100)──▶ checked (provider, renter, opening,
        program, already settled, above the deposit)
        ──escrow.pack──▶ batches that fit one transaction (address lookup tables where the
          escrow has them) ──for each batch: journal opens it ─▶ escrow.settle ─▶ journal
          closes it with the chain's settled marks

Safety rests on the program, not on this bookkeeping: a receipt at or below a channel's
on-chain ``settled`` mark pays nothing, so resubmitting after a crash or a timeout can never
pay twice. A batch refused as a whole (one bad receipt fails the transaction) is split in
halves until the culprit stands alone; it is then set aside (``rejected``) when the program
refused it, or noted (``failed``) and retried next round when the refusal was not its own.
When the chain is unavailable mid-round the batch is closed from the chain's marks
(``reconciled`` when every receipt in it is settled, else ``failed``) and the round stops;
a batch a crash left open is closed the same way by :meth:`Settler.reconcile`.

What differs between the coordinator, a self-settling provider and the simulations'
stand-in is where claims come from and where batches are recorded: the
:class:`SettlementJournal` each of them implements (sqlite store, node store, memory), and
when they call :meth:`Settler.run_once`. Runtime-neutral: only ``anyio`` primitives, so the
same code runs under the coordinator's asyncio and the node's trio.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import anyio
from dgpu.contracts_client.money.errors import ChainUnavailable, SettlementRefused
from dgpu.contracts_client.money.escrow import READ_CHUNK, ChannelState, Escrow
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt

log = logging.getLogger(__name__)

Opening = tuple[bytes, int]
"""A channel opening: (channel address, open nonce)."""
Outcome = Literal["confirmed", "reconciled", "failed"]
SetAside = Literal["missing", "rejected", "above_deposit", "failed"]
"""Why a claim is not settled this round: no channel on chain; the chain names another
provider, renter, opening or program (never settles); the receipt is above the deposit (a
top-up may fix it); a batch of it alone was refused, not by the program (retried)."""


@dataclass(frozen=True)
class Claim:
    """The best receipt a journal holds for one channel opening."""

    receipt: Receipt
    provider: bytes | None = None
    """The provider the journal expects the channel to pay (None: whoever it names)."""
    settled: int = 0
    """The settled mark the journal last recorded for this opening."""

    @property
    def opening(self) -> Opening:
        return self.receipt.channel, self.receipt.open_nonce


@dataclass(frozen=True)
class BatchItem:
    channel: bytes
    open_nonce: int
    cumulative: int


@dataclass(frozen=True)
class OpenBatch:
    """A batch the journal holds as not finished (a crash, or the chain unavailable)."""

    id: int
    signature: str
    items: Sequence[BatchItem]


class SettlementJournal(Protocol):
    """Where claims come from and where the settler's decisions are recorded."""

    async def claims(self) -> Sequence[Claim]:
        """This round's candidates: one claim per channel opening owed more than settled,
        none of them in an open batch."""
        ...

    async def chain_mark(self, claim: Claim, settled: int) -> None:
        """The chain shows ``claim``'s opening settled up to ``settled`` (above
        ``claim.settled``)."""
        ...

    async def eligible(self, claim: Claim) -> None:
        """The chain agrees with ``claim`` (provider, renter, opening, program): a note
        of an earlier round may be cleared."""
        ...

    async def set_aside(self, claim: Claim, reason: SetAside, note: str) -> None:
        """``claim`` is not settled this round, for ``reason``."""
        ...

    async def open_batch(self, claims: Sequence[Claim]) -> int:
        """Record a batch about to be sent (before it is: a crash leaves it open)."""
        ...

    async def batch_sent(self, batch_id: int, signature: str) -> None: ...

    async def close_batch(
        self, batch_id: int, outcome: Outcome, marks: Mapping[Opening, int], error: str
    ) -> None:
        """Close a batch; ``marks``: the settled mark of each opening, as the chain shows."""
        ...

    async def open_batches(self) -> Sequence[OpenBatch]:
        """Batches opened and never closed (oldest first)."""
        ...


@dataclass
class RoundReport:
    batches: int = 0
    confirmed: int = 0
    reconciled: int = 0
    """Batches whose confirmation was lost but whose receipts the chain shows settled."""
    failed: int = 0
    channels_settled: int = 0
    amount: int = 0
    signatures: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    unavailable: int = 0
    """Times the chain was unavailable while a batch was out (not in :meth:`as_json`)."""

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def as_json(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "confirmed": self.confirmed,
            "reconciled": self.reconciled,
            "failed": self.failed,
            "channels_settled": self.channels_settled,
            "amount": self.amount,
            "signatures": list(self.signatures),
            "skipped": dict(self.skipped),
        }


class Settler:
    """Settles a journal's claims through ``escrow``; ``payer`` signs and pays every
    transaction (and owns the lookup tables). ``max_receipts_per_tx`` caps a batch below
    what packing allows (None: no cap)."""

    def __init__(
        self,
        escrow: Escrow,
        payer: Identity,
        journal: SettlementJournal,
        *,
        max_receipts_per_tx: int | None = None,
    ) -> None:
        self.escrow = escrow
        self.payer = payer
        self.journal = journal
        self.max_receipts_per_tx = max_receipts_per_tx
        # Rounds and reconciliation never interleave: both read marks and close batches.
        self._lock = anyio.Lock()

    async def read(self, channels: Sequence[bytes]) -> dict[bytes, ChannelState | None]:
        """The channels at these addresses, read ``READ_CHUNK`` at a time."""
        found: dict[bytes, ChannelState | None] = {}
        for start in range(0, len(channels), READ_CHUNK):
            chunk = channels[start : start + READ_CHUNK]
            found.update(zip(chunk, await self.escrow.read_channels(chunk), strict=True))
        return found

    async def reconcile(self, *, reason: str = "after restart") -> int:
        """Close the batches the journal holds open, from the chain's settled marks."""
        async with self._lock:
            return await self._reconcile(reason=reason)

    async def _reconcile(self, *, reason: str) -> int:
        open_batches = await self.journal.open_batches()
        for batch in open_batches:
            chain = await self.read(sorted({item.channel for item in batch.items}))
            await self._close_from_chain(batch.id, batch.items, chain, reason=reason)
            log.info("reconciled batch %d (signature %r) from chain", batch.id, batch.signature)
        return len(open_batches)

    async def run_once(self) -> RoundReport:
        """One round: close batches an earlier round left open, then settle what is due.
        Raises ChainUnavailable when the claims cannot be read at all."""
        async with self._lock:
            await self._reconcile(reason="left open by an earlier round")
            report = RoundReport()
            claims = list(await self.journal.claims())
            if not claims:
                return report
            chain = await self.read(sorted({c.receipt.channel for c in claims}))
            ready = [c for c in claims if await self._eligible(c, chain, report)]
            for group in await self._pack(ready):
                if not await self._settle_group(group, report):
                    break
            return report

    async def _pack(self, ready: Sequence[Claim]) -> list[list[Claim]]:
        if not ready:
            return []
        by_opening = {c.opening: c for c in ready}
        packed = await self.escrow.pack(self.payer, [c.receipt for c in ready])
        cap = self.max_receipts_per_tx
        groups: list[list[Claim]] = []
        for batch in packed:
            claims = [by_opening[r.channel, r.open_nonce] for r in batch]
            size = len(claims) if cap is None else cap
            groups.extend(claims[k : k + size] for k in range(0, len(claims), size))
        return groups

    async def _eligible(
        self, claim: Claim, chain: Mapping[bytes, ChannelState | None], report: RoundReport
    ) -> bool:
        receipt = claim.receipt
        found = chain.get(receipt.channel)
        if found is None:
            await self.journal.set_aside(claim, "missing", "no channel on chain")
            report.skip("missing")
            return False
        problem = None
        if claim.provider is not None and found.provider != claim.provider:
            problem = "the channel on chain names another provider"
        elif found.renter != receipt.renter:
            problem = "the channel on chain names another renter"
        elif found.open_nonce != receipt.open_nonce:
            problem = f"the channel was reopened (opening {found.open_nonce})"
        elif receipt.program_id != self.escrow.program_id:
            problem = "the receipt is for another escrow program"
        if problem is not None:
            await self.journal.set_aside(claim, "rejected", problem)
            report.skip("rejected")
            return False
        if found.settled > claim.settled:
            await self.journal.chain_mark(claim, found.settled)
        await self.journal.eligible(claim)
        if found.settled >= receipt.cumulative:
            report.skip("already_settled")
            return False
        if receipt.cumulative > found.deposit:
            note = f"receipt exceeds the deposit {found.deposit}"
            await self.journal.set_aside(claim, "above_deposit", note)
            report.skip("above_deposit")
            return False
        return True

    async def _settle_group(self, group: list[Claim], report: RoundReport) -> bool:
        """Settle one group, bisecting a refusal; False when the chain is unavailable."""
        batch_id = await self.journal.open_batch(group)
        report.batches += 1
        try:
            landed = await self.escrow.settle(self.payer, [c.receipt for c in group])
        except SettlementRefused as exc:
            await self.journal.close_batch(batch_id, "failed", {}, str(exc))
            report.failed += 1
            if len(group) == 1:
                reason: SetAside = "rejected" if exc.permanent else "failed"
                await self.journal.set_aside(group[0], reason, str(exc))
                report.skip(reason)
                return True
            half = len(group) // 2
            return await self._settle_group(group[:half], report) and await self._settle_group(
                group[half:], report
            )
        except ChainUnavailable as exc:
            log.warning("settlement batch %d: chain unavailable: %s", batch_id, exc)
            report.unavailable += 1
            items = [BatchItem(*c.opening, c.receipt.cumulative) for c in group]
            try:
                chain = await self.read(sorted({item.channel for item in items}))
            except ChainUnavailable:
                return False  # stays open; reconciled at the next start or round
            outcome = await self._close_from_chain(batch_id, items, chain, reason=str(exc))
            if outcome == "reconciled":
                report.reconciled += 1
            else:
                report.failed += 1
            return False
        await self.journal.batch_sent(batch_id, landed.signature)
        after = dict(landed.channels)
        marks = {c.opening: after[c.receipt.channel] for c in group if c.receipt.channel in after}
        await self.journal.close_batch(batch_id, "confirmed", marks, "")
        amount = sum(max(0, marks.get(c.opening, c.settled) - c.settled) for c in group)
        report.confirmed += 1
        report.channels_settled += len(group)
        report.amount += amount
        report.signatures.append(landed.signature)
        log.info(
            "settled batch %d: %d channels, %d base units, %s",
            batch_id,
            len(group),
            amount,
            landed.signature,
        )
        return True

    async def _close_from_chain(
        self,
        batch_id: int,
        items: Sequence[BatchItem],
        chain: Mapping[bytes, ChannelState | None],
        *,
        reason: str,
    ) -> Outcome:
        marks: dict[Opening, int] = {}
        done = True
        for item in items:
            found = chain.get(item.channel)
            if found is not None and found.open_nonce == item.open_nonce:
                marks[item.channel, item.open_nonce] = found.settled
            if found is None or found.settled < item.cumulative:
                done = False
        outcome: Outcome = "reconciled" if done else "failed"
        error = "" if done else f"not settled on chain ({reason}); channels retried"
        await self.journal.close_batch(batch_id, outcome, marks, error)
        return outcome
