"""Settlement batch figures of the escrow program (real ``.so`` in LiteSVM).

For batches of 1..max receipts, as a legacy transaction and as a v0 transaction whose
accounts go through an address lookup table: transaction bytes, compute units (total and
per receipt) and the fee the submitter pays per receipt. Every receipt comes from its own
renter (the worst case: no public key is shared in the precompile data).

    python benchmarks/bench_settle.py

Prints figures only; no pass/fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from dgpu.contracts import so_sha256
from dgpu.contracts_client import (
    EscrowClient,
    Settlement,
    lookup_table_entries,
    receipts_per_transaction,
    settle_transaction,
)
from dgpu.contracts_client import localnet as ln
from dgpu.contracts_client.chain import LiteSVMChain
from dgpu.contracts_client.settlement import PACKET_DATA_SIZE, legacy_settle_transaction
from dgpu.protocol.identity import Identity
from dgpu.protocol.receipt import RECEIPT_LEN
from solders.keypair import Keypair

SOL = 10**9
DEPOSIT = 100 * 10**9
START_TIME = 1_750_000_000


@dataclass(frozen=True)
class Row:
    mode: str
    receipts: int
    tx_bytes: int
    units: int
    fee: int

    def line(self) -> str:
        return (
            f"{self.mode:<8} {self.receipts:>8} {self.tx_bytes:>8} {self.units:>9} "
            f"{self.units // self.receipts:>10} {self.fee // self.receipts:>12}"
        )


async def measure(count: int, *, with_table: bool) -> Row:
    admin = Keypair()
    chain = LiteSVMChain(start_time=START_TIME, upgrade_authority=admin)
    await chain.request_airdrop(admin.pubkey(), 1_000 * SOL)
    mint = await ln.create_mint(chain, admin)
    client = EscrowClient(chain)
    treasury = Keypair()
    await ln.fund_wallet(chain, treasury.pubkey(), mint=mint)
    await client.initialize(admin, treasury=treasury.pubkey(), mints=[mint.address])
    provider = Keypair()
    await ln.fund_wallet(chain, provider.pubkey(), lamports=SOL, mint=mint)

    items: list[Settlement] = []
    for i in range(count):
        renter = Identity.from_label(f"bench renter {i}")
        keypair = renter.to_solders()
        await ln.fund_wallet(chain, keypair.pubkey(), lamports=SOL, mint=mint, tokens=DEPOSIT)
        opened = await client.open_channel(
            keypair,
            provider=provider.pubkey(),
            mint=mint.address,
            deposit=DEPOSIT,
            expiry=START_TIME + 3_600,
        )
        cumulative = (i + 1) * 10**9
        receipt_signature = opened.state.receipt(cumulative).sign(renter)
        items.append(Settlement.for_channel(opened.state, cumulative, receipt_signature))

    submitter = Keypair()
    await chain.request_airdrop(submitter.pubkey(), SOL)
    blockhash = await chain.latest_blockhash()
    if with_table:
        table = await client.create_lookup_table(admin, lookup_table_entries(items))
        tx = settle_transaction(submitter, items, await chain.latest_blockhash(), table)
    else:
        tx = legacy_settle_transaction(submitter, items, blockhash)
    before = await chain.get_balance(submitter.pubkey())
    signature = await chain.send_transaction(tx)
    paid = before - await chain.get_balance(submitter.pubkey())
    (landed,) = chain.ledger.statuses([signature])
    assert landed is not None and landed.err is None
    mode = "v0+ALT" if with_table else "legacy"
    return Row(mode, count, len(bytes(tx)), landed.units_consumed, paid)


async def main() -> None:
    limits = {t: receipts_per_transaction(with_lookup_table=t) for t in (False, True)}
    print(f"escrow settle batches  (program sha256 {so_sha256()[:16]}…, LiteSVM)")
    print(
        f"{'mode':<8} {'receipts':>8} {'tx bytes':>8} {'CU total':>9} "
        f"{'CU/receipt':>10} {'fee/receipt':>12}"
    )
    for with_table in (False, True):
        for count in range(1, limits[with_table] + 1):
            print((await measure(count, with_table=with_table)).line())
    print()
    print(
        f"receipts per transaction: {limits[False]} without a lookup table, "
        f"{limits[True]} with one (packet limit {PACKET_DATA_SIZE} bytes)"
    )
    print(
        "fee = lamports per signature x (1 transaction signature + 1 precompile signature "
        "per receipt), no priority fee"
    )
    print(
        f"per receipt in the precompile: 14 B offsets + 32 B key + 64 B signature + "
        f"{RECEIPT_LEN} B receipt = {14 + 32 + 64 + RECEIPT_LEN} B; plus 3 accounts "
        "(3 x 32 B legacy, 3 x 1 B through the table)"
    )


if __name__ == "__main__":
    trio.run(main)
