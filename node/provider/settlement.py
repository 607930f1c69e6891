"""Getting paid: the provider's latest receipts, to the coordinator or straight on chain.

With a coordinator, the provider still watches the chain: a receipt the coordinator has
not settled some time after its job ended (it is down, or censors this provider) is
:func:`overdue` and the provider settles it itself, the way it does without one.

Settling itself goes through the shared :class:`~dgpu.contracts_client.money.Settler`
(channels read in chunks, checked, packed with a lookup table on chain, a refused batch
bisected) over :class:`_StoreJournal`, the node store's view of it.

Settlement is idempotent: the program pays only ``cumulative - settled`` and a receipt at
or below the high-water mark pays nothing, so handing a receipt over twice, or settling
it both through the coordinator and directly, never pays twice. Every outcome is recorded
in the store (``settlements``), and a receipt stays "unsettled" until the chain has been
seen to pay it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dgpu.contracts_client.money import (
    Claim,
    Escrow,
    OpenBatch,
    Opening,
    Outcome,
    SetAside,
    Settler,
)
from dgpu.node.provider.ports import OfferDesk
from dgpu.node.store import NodeStore
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt

log = logging.getLogger(__name__)


IN_FLIGHT = (
    "the chain became unavailable while this receipt's settlement was in flight; whether it "
    "landed is read from the chain at the next settle"
)


@dataclass(frozen=True)
class SettleResult:
    channel: bytes
    job_id: bytes
    cumulative: int
    status: str
    """``settled`` (the chain holds at least this receipt), ``handed_off`` (to the
    coordinator) or ``failed``."""
    signature: str = ""
    error: str = ""


class _StoreJournal:
    """The settler's journal over the provider's :class:`NodeStore`: claims are the
    receipts to settle, outcomes are recorded in ``settlements`` and collected as
    :class:`SettleResult`. Batches live only as long as the call: a crash leaves nothing
    open that :func:`reconcile` (the chain's marks) does not settle the next time."""

    def __init__(
        self,
        store: NodeStore,
        receipts: Sequence[Receipt],
        provider: bytes,
        now: Callable[[], int],
    ) -> None:
        self.store = store
        self.receipts = list(receipts)
        self.provider = provider
        self.now = now
        self.results: dict[Opening, SettleResult] = {}
        self._batches: dict[int, Sequence[Claim]] = {}
        self._signatures: dict[int, str] = {}
        self._errors: dict[Opening, str] = {}

    async def claims(self) -> Sequence[Claim]:
        return [Claim(r, provider=self.provider) for r in self.receipts]

    def _settled(self, receipt: Receipt, mark: int, signature: str = "") -> None:
        via = "self" if signature else ""
        self.store.record_settlement(
            receipt,
            status="settled",
            via=via,
            signature=signature,
            paid_on_chain=mark,
            now=self.now(),
        )
        self.results[receipt.channel, receipt.open_nonce] = SettleResult(
            receipt.channel, receipt.job_id, receipt.cumulative, "settled", signature=signature
        )

    def _failed(self, receipt: Receipt, error: str) -> None:
        self.store.record_settlement(
            receipt, status="failed", via="self", error=error[:500], now=self.now()
        )
        self.results[receipt.channel, receipt.open_nonce] = SettleResult(
            receipt.channel, receipt.job_id, receipt.cumulative, "failed", error=error
        )

    async def chain_mark(self, claim: Claim, settled: int) -> None:
        if settled >= claim.receipt.cumulative:  # paid already (the coordinator, a retry)
            self._settled(claim.receipt, settled)

    async def eligible(self, claim: Claim) -> None:
        return None

    async def set_aside(self, claim: Claim, reason: SetAside, note: str) -> None:
        self._failed(claim.receipt, note)

    async def open_batch(self, claims: Sequence[Claim]) -> int:
        batch_id = len(self._batches)
        self._batches[batch_id] = claims
        return batch_id

    async def batch_sent(self, batch_id: int, signature: str) -> None:
        self._signatures[batch_id] = signature

    async def close_batch(
        self, batch_id: int, outcome: Outcome, marks: Mapping[Opening, int], error: str
    ) -> None:
        signature = self._signatures.get(batch_id, "")
        for claim in self._batches[batch_id]:
            mark = marks.get(claim.opening)
            if outcome != "failed" and mark is not None:
                self._settled(claim.receipt, mark, signature)
            elif error:  # kept for the end of the round: a split batch may still land
                self._errors[claim.opening] = error

    async def open_batches(self) -> Sequence[OpenBatch]:
        return []

    def finish(self, error: str) -> list[SettleResult]:
        """The results in the order of the receipts; one the round never reached (the
        chain became unavailable) is recorded as failed with the last error seen, one whose
        transaction was sent without an answer as failed for now (:data:`IN_FLIGHT`)."""
        tried = {c.opening for claims in self._batches.values() for c in claims}
        for receipt in self.receipts:
            opening = receipt.channel, receipt.open_nonce
            if opening in self.results:
                continue
            if opening in tried and opening not in self._errors:
                self._failed(receipt, IN_FLIGHT)
            else:
                self._failed(receipt, self._errors.get(opening, error))
        return [self.results[r.channel, r.open_nonce] for r in self.receipts]


async def settle_on_chain(
    store: NodeStore,
    escrow: Escrow,
    payer: Identity,
    *,
    now: Callable[[], int],
    receipts: Sequence[Receipt] | None = None,
    batch: int | None = None,
) -> list[SettleResult]:
    """Submit receipts (default: every unsettled one in the store) through ``escrow`` with
    the shared :class:`~dgpu.contracts_client.money.Settler`: channels read in chunks,
    checked (they must pay ``payer``), packed (with a lookup table on chain), a refused
    batch bisected; channels the chain already paid are only recorded. ``batch`` caps the
    receipts per transaction (None: as many as fit)."""
    pending = list(store.unsettled_receipts() if receipts is None else receipts)
    if not pending:
        return []
    journal = _StoreJournal(store, pending, payer.public_key, now)
    settler = Settler(escrow, payer, journal, max_receipts_per_tx=batch)
    await settler.run_once()
    return journal.finish("the chain became unavailable before this receipt was sent")


async def reconcile(store: NodeStore, escrow: Escrow, *, now: Callable[[], int]) -> list[Receipt]:
    """Record what the chain already paid (by anyone: the coordinator, a retry); returns
    the receipts still unsettled."""
    remaining: list[Receipt] = []
    for receipt in store.unsettled_receipts():
        state = await escrow.read_channel(receipt.channel)
        if (
            state is not None
            and state.open_nonce == receipt.open_nonce
            and state.settled >= receipt.cumulative
        ):
            store.record_settlement(
                receipt, status="settled", paid_on_chain=state.settled, now=now()
            )
            continue
        remaining.append(receipt)
    return remaining


async def overdue(
    store: NodeStore,
    escrow: Escrow,
    receipts: Sequence[Receipt],
    *,
    now: int,
    after_s: int,
    margin_s: int,
) -> list[Receipt]:
    """Of ``receipts`` (unpaid on chain), those the coordinator has had long enough: their
    job ended ``after_s`` or more ago, or their channel's renter may reclaim it within
    ``margin_s`` (the provider would lose them). A receipt whose channel opening is gone
    from the chain can no longer be settled by anyone and is never due. ``after_s`` 0:
    none."""
    if after_s <= 0:
        return []
    due: list[Receipt] = []
    for receipt in receipts:
        state = await escrow.read_channel(receipt.channel)
        if state is None or state.open_nonce != receipt.open_nonce:
            continue
        job = store.get_job(receipt.job_id, "provider")
        ended = None if job is None else job.ended_at
        if (ended is not None and now - ended >= after_s) or state.reclaimable_at - now <= margin_s:
            due.append(receipt)
    return due


async def hand_to_desk(
    store: NodeStore,
    desk: OfferDesk,
    *,
    now: Callable[[], int],
    receipts: Sequence[Receipt] | None = None,
) -> list[SettleResult]:
    """Post receipts (default: every unsettled one) to the coordinator's batcher, all in
    one signed batch request (per receipt: handed off, or failed with the reason)."""
    results: list[SettleResult] = []
    due: list[Receipt] = []
    for receipt in store.unsettled_receipts() if receipts is None else receipts:
        done = store.settlement(receipt.channel, receipt.open_nonce)
        if (
            done is not None
            and done.status == "handed_off"
            and done.cumulative >= receipt.cumulative
        ):
            results.append(
                SettleResult(receipt.channel, receipt.job_id, receipt.cumulative, "handed_off")
            )
            continue
        due.append(receipt)
    if not due:
        return results
    try:
        answers = await desk.post_receipts(due)
    except DgpuError as exc:
        log.warning("coordinator refused or missed %d receipts: %s", len(due), exc)
        answers = [{"status": "refused", "message": str(exc)} for _ in due]
    for receipt, answer in zip(due, answers, strict=True):
        if answer.get("status") != "accepted":
            error = str(answer.get("message") or answer.get("code") or "refused")
            log.warning("coordinator refused a receipt: %s", error)
            results.append(
                SettleResult(
                    receipt.channel, receipt.job_id, receipt.cumulative, "failed", error=error
                )
            )
            continue
        store.record_settlement(receipt, status="handed_off", via="coordinator", now=now())
        results.append(
            SettleResult(receipt.channel, receipt.job_id, receipt.cumulative, "handed_off")
        )
    return results
