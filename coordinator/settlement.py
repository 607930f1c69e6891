"""The settlement batcher: highest unsettled receipt per channel, packed into few
transactions, submitted through the escrow client, recorded, reconciled after a crash.

A round::

    unsettled channels ──read on chain──▶ checked (provider, renter, opening, deposit)
        ──prepare──▶ groups that fit one transaction (address lookup tables)
        ──for each group: write batch (pending) ─▶ settle (send + confirm) ─▶ read the
          channels' settled marks ─▶ close the batch (confirmed) and raise ``settled``

Safety rests on the program, not on this bookkeeping: a receipt at or below a channel's
on-chain ``settled`` mark pays nothing, so resubmitting after a crash or a timeout can never
pay twice. A batch refused as a whole (one bad receipt fails the transaction) is split in
halves until the culprit stands alone; that channel is then set aside (``rejected``) when
the program refused it, or noted and retried next round when the failure was not its own.
A batch left ``pending``/``submitted`` by a crash is closed at start by :meth:`reconcile`
from the chain's marks (``reconciled`` when every item is settled, else ``failed``, and its
channels are simply eligible again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dgpu.coordinator.errors import SettlementError, forbidden, unprocessable
from dgpu.coordinator.metrics import Metrics
from dgpu.coordinator.store import ChannelKey, Store, Unsettled
from dgpu.protocol.identity import address_of
from dgpu.protocol.messages import Receipt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnChainChannel:
    """What the settler needs of a channel account."""

    provider: str
    renter: str
    open_nonce: int
    deposit: int
    settled: int


class DeterministicFailure(SettlementError):
    """The chain refused a batch as it is (raised by backends; the batcher bisects it).
    ``permanent``: the escrow program itself refused a receipt, so the culprit is set aside."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class ChainTrouble(SettlementError):
    """The chain could not be reached or did not confirm in time: the batch may or may not
    have landed (raised by backends; the batcher reconciles from the chain)."""


class SettlementBackend(Protocol):
    """The escrow as the batcher sees it (adapted from ``dgpu.contracts_client``)."""

    program_id: str
    """Base58 id of the escrow program whose channels this backend settles."""

    async def read_channels(self, channels: Sequence[str]) -> dict[str, OnChainChannel | None]:
        """The channel accounts at these addresses (None where there is none)."""
        ...

    async def prepare(self, items: Sequence[Unsettled]) -> list[list[Unsettled]]:
        """Split ``items`` into groups that each fit one settle transaction (setting up
        lookup tables as needed)."""
        ...

    async def settle(self, items: Sequence[Unsettled]) -> str:
        """Send one settle transaction for ``items``, wait for confirmation, return its
        signature; raise DeterministicFailure or ChainTrouble."""
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
        self.clock = clock
        self.max_channels_per_round = max_channels_per_round
        self._lock = asyncio.Lock()

    def _now(self) -> int:
        return int(self.clock())

    async def check_intake(self, receipt: Receipt, provider: str, *, read_chain: bool) -> None:
        """Refuse a receipt of another program or (``read_chain``) whose channel on chain
        belongs to someone else. A chain that cannot be read does not block intake (the
        round checks again)."""
        channel = address_of(receipt.channel)
        if address_of(receipt.program_id) != self.backend.program_id:
            raise unprocessable(
                f"this coordinator settles channels of program {self.backend.program_id}",
                "wrong_program",
            )
        if not read_chain:
            return
        try:
            found = (await self.backend.read_channels([channel])).get(channel)
        except ChainTrouble as exc:
            log.warning("cannot check channel %s on chain at intake: %s", channel, exc)
            return
        if found is None:
            raise unprocessable(f"no open channel {channel} on chain", "unknown_channel")
        if found.provider != provider:
            raise forbidden("the channel on chain names another provider", "not_channel_provider")
        if found.renter != address_of(receipt.renter):
            raise unprocessable("the channel on chain names another renter", "wrong_renter")
        if found.open_nonce != receipt.open_nonce:
            raise unprocessable(
                f"the channel's opening on chain is {found.open_nonce}, not {receipt.open_nonce}",
                "wrong_opening",
            )

    async def reconcile(self) -> int:
        """Close batches a crash left open, from the chain's settled marks."""
        async with self._lock:
            return await self._reconcile(reason="after restart")

    async def _reconcile(self, *, reason: str) -> int:
        open_batches = await self.store.channels.open_batches()
        for batch_id, signature, keys in open_batches:
            chain = await self.backend.read_channels(sorted({k.channel for k in keys}))
            await self._close_from_chain(batch_id, keys, chain, reason=reason)
            log.info("reconciled batch %d (signature %r) from chain", batch_id, signature)
        return len(open_batches)

    async def run_once(self) -> RoundReport:
        """One round: close batches an earlier round left open (chain trouble), then settle."""
        async with self._lock:
            await self._reconcile(reason="left open by an earlier round")
            report = RoundReport()
            candidates = await self.store.channels.unsettled(self.max_channels_per_round)
            if not candidates:
                return report
            chain = await self.backend.read_channels(sorted({u.key.channel for u in candidates}))
            ready = [u for u in candidates if await self._eligible(u, chain, report)]
            for group in await self.backend.prepare(ready) if ready else []:
                if not await self._settle_group(group, report):
                    break
            return report

    async def _eligible(
        self, item: Unsettled, chain: dict[str, OnChainChannel | None], report: RoundReport
    ) -> bool:
        found = chain.get(item.key.channel)
        now = self._now()
        if found is None:
            await self.store.channels.mark(item.key, state="missing", note="no channel on chain")
            report.skip("missing")
            return False
        problem = None
        if found.provider != item.provider:
            problem = "the channel on chain names another provider"
        elif found.renter != item.renter:
            problem = "the channel on chain names another renter"
        elif found.open_nonce != item.key.open_nonce:
            problem = f"the channel was reopened (opening {found.open_nonce})"
        elif item.program_id != self.backend.program_id:
            problem = "the receipt is for another escrow program"
        if problem is not None:
            await self.store.channels.mark(item.key, state="rejected", note=problem)
            report.skip("rejected")
            return False
        if found.settled > item.settled:
            await self.store.channels.set_settled(item.key, found.settled, now)
        await self.store.channels.mark(item.key, state="open", note="")
        if found.settled >= item.cumulative:
            report.skip("already_settled")
            return False
        if item.cumulative > found.deposit:
            await self.store.channels.mark(
                item.key, state="open", note=f"receipt exceeds the deposit {found.deposit}"
            )
            report.skip("above_deposit")
            return False
        return True

    async def _settle_group(self, group: list[Unsettled], report: RoundReport) -> bool:
        """Settle one group, bisecting on a deterministic refusal; False on chain trouble."""
        batch_id = await self.store.channels.create_batch(group, self._now())
        report.batches += 1
        keys = [u.key for u in group]
        try:
            signature = await self.backend.settle(group)
        except DeterministicFailure as exc:
            await self.store.channels.finish_batch(
                batch_id, state="failed", settled_after={}, now=self._now(), error=str(exc)
            )
            report.failed += 1
            self.metrics.batches.labels("failed").inc()
            if len(group) == 1:
                state = "rejected" if exc.permanent else "open"
                await self.store.channels.mark(group[0].key, state=state, note=str(exc))
                report.skip(state if exc.permanent else "failed")
                return True
            half = len(group) // 2
            return await self._settle_group(group[:half], report) and await self._settle_group(
                group[half:], report
            )
        except ChainTrouble as exc:
            log.warning("settlement batch %d: chain trouble: %s", batch_id, exc)
            self.metrics.failures.labels("settlement").inc()
            try:
                chain = await self.backend.read_channels(sorted({k.channel for k in keys}))
            except ChainTrouble:
                return False  # stays pending; reconciled at the next start or round
            state = await self._close_from_chain(batch_id, keys, chain, reason=str(exc))
            if state == "reconciled":
                report.reconciled += 1
            else:
                report.failed += 1
            return False
        await self.store.channels.set_submitted(batch_id, signature)
        chain = await self.backend.read_channels(sorted({k.channel for k in keys}))
        settled_after = {
            u.key: found.settled for u in group if (found := chain.get(u.key.channel)) is not None
        }
        await self.store.channels.finish_batch(
            batch_id, state="confirmed", settled_after=settled_after, now=self._now()
        )
        amount = sum(max(0, settled_after.get(u.key, u.settled) - u.settled) for u in group)
        report.confirmed += 1
        report.channels_settled += len(group)
        report.amount += amount
        report.signatures.append(signature)
        self.metrics.batches.labels("confirmed").inc()
        self.metrics.settled_amount.inc(amount)
        log.info(
            "settled batch %d: %d channels, %d base units, %s",
            batch_id,
            len(group),
            amount,
            signature,
        )
        return True

    async def _close_from_chain(
        self,
        batch_id: int,
        keys: Sequence[ChannelKey],
        chain: dict[str, OnChainChannel | None],
        *,
        reason: str,
    ) -> Literal["reconciled", "failed"]:
        items = await self.store.db.fetchall(
            "SELECT channel, open_nonce, cumulative FROM batch_items WHERE batch_id = ?",
            (batch_id,),
        )
        settled_after: dict[ChannelKey, int] = {}
        done = True
        for row in items:
            key = ChannelKey(row["channel"], row["open_nonce"])
            found = chain.get(key.channel)
            if found is not None and found.open_nonce == key.open_nonce:
                settled_after[key] = found.settled
            if found is None or found.settled < row["cumulative"]:
                done = False
        state: Literal["reconciled", "failed"] = "reconciled" if done else "failed"
        await self.store.channels.finish_batch(
            batch_id,
            state=state,
            settled_after=settled_after,
            now=self._now(),
            error="" if done else f"not settled on chain ({reason}); channels retried",
        )
        self.metrics.batches.labels(state).inc()
        return state
