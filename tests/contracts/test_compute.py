"""Compute and size budget of settlement (LiteSVM's CU count is deterministic: this is a
budget, not a timing). Settling must not cost more than the program did before issue 16
(6,499 CU for a batch of one, +6,196 per extra receipt), and five receipts from five
different renters (no shared key in the precompile data) must still fit one v0
transaction through an address lookup table."""

from __future__ import annotations

from dgpu.contracts_client import (
    PACKET_DATA_SIZE,
    Settlement,
    lookup_table_entries,
    receipts_per_transaction,
    settle_transaction,
)
from solders.message import MessageV0

from tests.contracts.support import DGPU, World

FIRST_RECEIPT_CU = 6_499
EXTRA_RECEIPT_CU = 6_196
RECEIPTS_WITH_TABLE = 5


def budget(receipts: int) -> int:
    return FIRST_RECEIPT_CU + EXTRA_RECEIPT_CU * (receipts - 1)


async def test_settle_stays_within_the_compute_budget_and_five_fit(world: World) -> None:
    assert receipts_per_transaction(with_lookup_table=True) == RECEIPTS_WITH_TABLE
    renters = [await world.party(f"budget renter {i}", 10 * DGPU) for i in range(15)]
    pool = iter(renters)
    for count in range(1, RECEIPTS_WITH_TABLE + 1):
        items: list[Settlement] = []
        for i in range(count):
            renter = next(pool)
            channel = await world.open(5 * DGPU, renter=renter)
            items.append(world.receipt(channel, (i + 1) * DGPU // 2, signer=renter))
        table = await world.client.create_lookup_table(world.admin, lookup_table_entries(items))
        tx = settle_transaction(world.admin, items, await world.chain.latest_blockhash(), table)
        assert isinstance(tx.message, MessageV0)
        assert len(bytes(tx)) <= PACKET_DATA_SIZE
        sig = await world.chain.send_transaction(tx)
        assert world.units(sig) <= budget(count), (count, world.units(sig))
