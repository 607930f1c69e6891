"""A provider settling several channels itself goes through the shared settler: on the real
escrow program in LiteSVM its receipts are packed into one v0 transaction that names their
accounts through an address lookup table, and every channel is paid."""

from __future__ import annotations

from pathlib import Path

import trio
from dgpu.contracts_client.chain import AnyTransaction, LiteSVMChain
from dgpu.contracts_client.money import ChainEscrow
from dgpu.contracts_client.settlement import receipts_per_transaction
from dgpu.node.provider import settle_on_chain
from dgpu.node.store import NodeStore
from solders.message import MessageV0
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from tests.coordinator.escrow_world import DGPU, make_world, net_of

CHANNELS = 5


class RecordingChain(LiteSVMChain):
    """LiteSVM that keeps every transaction sent to it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[AnyTransaction] = []

    async def send_transaction(self, tx: AnyTransaction) -> Signature:
        self.sent.append(tx)
        return await super().send_transaction(tx)


def test_self_settling_several_channels_packs_them_with_a_lookup_table(tmp_path: Path) -> None:
    trio.run(_scenario, tmp_path)


async def _scenario(tmp_path: Path) -> None:
    chain = RecordingChain()
    world = await make_world(chain, providers=1, renters=2, label="pack")
    provider = world.providers[0]
    receipts = []
    for k in range(CHANNELS):
        renter = world.renters[k % 2]
        channel = await world.open(renter, provider, deposit=DGPU)
        receipts.append(world.receipt(renter, channel, (k + 1) * 1_000_000))
    assert receipts_per_transaction(with_lookup_table=False) < CHANNELS
    assert receipts_per_transaction(with_lookup_table=True) >= CHANNELS
    before = await world.balance(provider)
    sent_before = len(chain.sent)

    with NodeStore.open(tmp_path / "provider.sqlite") as store:
        results = await settle_on_chain(
            store, ChainEscrow(world.escrow), provider, now=lambda: 1, receipts=receipts
        )
        records = [store.settlement(r.channel, r.open_nonce) for r in receipts]

    assert [r.status for r in results] == ["settled"] * CHANNELS
    (signature,) = {r.signature for r in results}  # one transaction for all of them
    assert all(rec is not None and (rec.status, rec.via) == ("settled", "self") for rec in records)
    settles = [
        tx
        for tx in chain.sent[sent_before:]
        if isinstance(tx, VersionedTransaction) and str(tx.signatures[0]) == signature
    ]
    (settle,) = settles
    assert isinstance(settle.message, MessageV0)
    lookups = settle.message.address_table_lookups
    # Every channel and vault, and the provider's one token account, by table index.
    assert len(lookups) == 1 and len(lookups[0].writable_indexes) == 2 * CHANNELS + 1
    owed = sum(net_of((k + 1) * 1_000_000) for k in range(CHANNELS))
    assert await world.balance(provider) - before == owed
