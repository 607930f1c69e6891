"""Getting paid: the provider's latest receipts, to the coordinator or straight on chain.

With a coordinator, the provider still watches the chain: a receipt the coordinator has
not settled some time after its job ended (it is down, or censors this provider) is
:func:`overdue` and the provider settles it itself, the way it does without one.

Settlement is idempotent: the program pays only ``cumulative - settled`` and a receipt at
or below the high-water mark pays nothing, so handing a receipt over twice, or settling
it both through the coordinator and directly, never pays twice. Every outcome is recorded
in the store (``settlements``), and a receipt stays "unsettled" until the chain has been
seen to pay it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dgpu.node.payments.escrow import Escrow
from dgpu.node.provider.ports import OfferDesk
from dgpu.node.store import NodeStore
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt

log = logging.getLogger(__name__)

DEFAULT_BATCH = 4


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


async def settle_on_chain(
    store: NodeStore,
    escrow: Escrow,
    payer: Identity,
    *,
    now: Callable[[], int],
    receipts: Sequence[Receipt] | None = None,
    batch: int = DEFAULT_BATCH,
) -> list[SettleResult]:
    """Submit receipts (default: every unsettled one in the store) through ``escrow``,
    ``batch`` per transaction; channels the chain already paid are only recorded."""
    pending = list(store.unsettled_receipts() if receipts is None else receipts)
    results: list[SettleResult] = []
    due: list[Receipt] = []
    for receipt in pending:
        state = await escrow.read_channel(receipt.channel)
        paid = (
            state is not None
            and state.open_nonce == receipt.open_nonce
            and state.settled >= receipt.cumulative
        )
        if paid:
            assert state is not None
            store.record_settlement(
                receipt, status="settled", paid_on_chain=state.settled, now=now()
            )
            results.append(
                SettleResult(receipt.channel, receipt.job_id, receipt.cumulative, "settled")
            )
            continue
        due.append(receipt)
    for start in range(0, len(due), batch):
        group = due[start : start + batch]
        try:
            landed = await escrow.settle(payer, group)
        except DgpuError as exc:
            log.warning("settling %d receipts failed: %s", len(group), exc)
            results.extend(await _one_by_one(store, escrow, payer, group, now=now))
            continue
        marks = dict(landed.channels)
        for receipt in group:
            store.record_settlement(
                receipt,
                status="settled",
                via="self",
                signature=landed.signature,
                paid_on_chain=marks.get(receipt.channel, receipt.cumulative),
                now=now(),
            )
            results.append(
                SettleResult(
                    receipt.channel,
                    receipt.job_id,
                    receipt.cumulative,
                    "settled",
                    signature=landed.signature,
                )
            )
    return results


async def _one_by_one(
    store: NodeStore,
    escrow: Escrow,
    payer: Identity,
    group: Sequence[Receipt],
    *,
    now: Callable[[], int],
) -> list[SettleResult]:
    """A batch failed: try each receipt alone so one bad channel does not block others."""
    results: list[SettleResult] = []
    for receipt in group:
        try:
            landed = await escrow.settle(payer, [receipt])
        except DgpuError as exc:
            store.record_settlement(
                receipt, status="failed", via="self", error=str(exc)[:500], now=now()
            )
            results.append(
                SettleResult(
                    receipt.channel, receipt.job_id, receipt.cumulative, "failed", error=str(exc)
                )
            )
            continue
        store.record_settlement(
            receipt,
            status="settled",
            via="self",
            signature=landed.signature,
            paid_on_chain=dict(landed.channels).get(receipt.channel, receipt.cumulative),
            now=now(),
        )
        results.append(
            SettleResult(
                receipt.channel,
                receipt.job_id,
                receipt.cumulative,
                "settled",
                signature=landed.signature,
            )
        )
    return results


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
    """Post receipts (default: every unsettled one) to the coordinator's batcher."""
    results: list[SettleResult] = []
    for receipt in store.unsettled_receipts() if receipts is None else receipts:
        done = store.settlement(receipt.channel, receipt.open_nonce)
        if (
            done is not None
            and done.status == "handed_off"
            and done.cumulative >= (receipt.cumulative)
        ):
            results.append(
                SettleResult(receipt.channel, receipt.job_id, receipt.cumulative, "handed_off")
            )
            continue
        try:
            await desk.post_receipt(receipt)
        except DgpuError as exc:
            log.warning("coordinator refused or missed a receipt: %s", exc)
            results.append(
                SettleResult(
                    receipt.channel, receipt.job_id, receipt.cumulative, "failed", error=str(exc)
                )
            )
            continue
        store.record_settlement(receipt, status="handed_off", via="coordinator", now=now())
        results.append(
            SettleResult(receipt.channel, receipt.job_id, receipt.cumulative, "handed_off")
        )
    return results
