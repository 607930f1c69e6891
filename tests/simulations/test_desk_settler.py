"""The simulations' coordinator stand-in settles through the shared settler: a receipt the
ledger refuses, mixed into a batch, is found by bisection and set aside while the others
settle, and it is not sent again at the next flush."""

from __future__ import annotations

import msgspec
import trio
from dgpu.contracts_client.money import Settler
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
from dgpu.protocol.signing import sign_receipt
from dgpu.simulations.nodes.chain import LedgerChain
from dgpu.simulations.nodes.desk import SimCoordinator
from dgpu.simulations.scenario import SettlementSpec

NOW = 1_700_000_000
CHANNELS = 5
BAD = 2


def test_a_refused_receipt_is_bisected_out_of_a_simulated_batch() -> None:
    trio.run(_scenario)


async def _scenario() -> None:
    chain = LedgerChain(lambda: NOW, Identity.from_label("desk/coordinator"), b"\x07" * 32)
    renter = Identity.from_label("desk/renter")
    provider = Identity.from_label("desk/provider")
    await chain.fund([renter], [], 10**9)
    escrow = chain.escrow()
    desk = SimCoordinator(
        SettlementSpec(max_receipts_per_tx=CHANNELS),
        identity=chain.coordinator,
        escrow=escrow,
        censored=frozenset(),
        clock=lambda: NOW,
        demand_window_s=3600,
    )
    assert isinstance(desk.settler, Settler)
    receipts: list[Receipt] = []
    for k in range(CHANNELS):
        opened = await escrow.open_channel(
            renter, provider=provider.public_key, mint=chain.mint, deposit=10**6, expiry=NOW + 60
        )
        unsigned = Receipt(
            job_id=bytes(16),
            seq=1,
            renter=renter.public_key,
            program_id=chain.program_id,
            channel=opened.address,
            open_nonce=opened.open_nonce,
            cumulative=1000 * (k + 1),
        )
        receipts.append(sign_receipt(unsigned, renter))
    # A signature of another receipt: the ledger refuses the whole batch.
    receipts[BAD] = msgspec.structs.replace(receipts[BAD], sig=receipts[0].sig)
    for receipt in receipts:
        await desk.post_receipt(receipt)

    await desk.flush()

    for k, receipt in enumerate(receipts):
        state = chain.ledger.state(receipt.channel)
        assert state is not None
        assert state.settled == (0 if k == BAD else receipt.cumulative)
    assert set(desk.journal.refused) == {receipts[BAD].channel}
    assert sum(desk.log.by_coordinator) == CHANNELS - 1
    assert len(desk.log.by_coordinator) >= 2  # the batch was split
    assert desk.log.failed >= 2  # the whole batch, then halves down to the culprit alone

    transactions = chain.ledger.transactions
    await desk.flush()
    assert chain.ledger.transactions == transactions  # the culprit stays set aside
