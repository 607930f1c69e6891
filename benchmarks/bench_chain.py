"""Transactions per second of the local chain, beside LiteSVM called in-process (the
ceiling), for SOL transfers and for escrow settle batches, and restart time against ledger
size.

    python benchmarks/bench_chain.py [--transfers 2000] [--settles 300]
                                     [--sizes 1000,10000,100000]

All figures come from the same run:
- ``litesvm``: bare ``LiteSVM.send_transaction`` of a SOL transfer (every row signs a new
  transfer to a new account inside the timed loop, ~0.5 ms of client work);
- ``ledger (memory)``: :class:`SvmLedger` with its in-memory journal (what in-process
  chains use): slots, blockhash window, history, pre/post balances;
- ``ledger (file)``: the same, journaled to SQLite (WAL) before returning, as
  ``dgpu chain serve`` does;
- ``chain serve``: ``sendTransaction`` over HTTP to a ``dgpu chain serve`` child, one
  client, sequential (each answer waits for the journal commit);
- settle batches: the escrow's ``settle`` of a full batch of renter-signed receipts (the
  most a legacy transaction holds, and the most a v0 transaction holds through an address
  lookup table), each batch raising every channel's cumulative; receipts signed before the
  clock starts, the transaction built and signed inside the loop. In-process:
  :class:`LiteSVMChain` (the ledger with its memory journal); through ``dgpu chain serve``:
  ``sendTransaction`` over HTTP, sequential;
- restart: opening a file ledger holding N transactions (each to a new account, so N
  accounts too);
- why filling slows as the ledger grows: what one Clock write (``warp_to_slot``, done once
  per transaction) costs bare LiteSVM holding N accounts — the LiteSVM bundled with solders
  0.26 copies its whole account map on every sysvar write — beside the journal alone
  (SQLite, no LiteSVM) committing transfer-like rows once it holds N of them.
Prints figures only; no pass/fail.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from dgpu.contracts_client import EscrowClient, Settlement, lookup_table_entries
from dgpu.contracts_client import localnet as ln
from dgpu.contracts_client.chain import Chain, LiteSVMChain, RpcChain, SvmLedger
from dgpu.contracts_client.chain.journal import BlockRow, Commit, Journal, TxRow
from dgpu.contracts_client.settlement import receipts_per_transaction, settle_transaction
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity
from solders.account import Account
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction, VersionedTransaction

SOL = 10**9


def _transfer(payer: Keypair, blockhash: Hash, lamports: int) -> Transaction:
    ix = transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=lamports)
    )
    return Transaction.new_signed_with_payer([ix], payer.pubkey(), [payer], blockhash)


def bench_litesvm(n: int) -> float:
    svm = LiteSVM()
    payer = Keypair()
    svm.airdrop(payer.pubkey(), 10**6 * SOL)
    start = time.perf_counter()
    for i in range(n):  # signed in the loop, as for the ledger: the same client work
        svm.send_transaction(_transfer(payer, svm.latest_blockhash(), SOL + i))
    return n / (time.perf_counter() - start)


def fill(ledger: SvmLedger, n: int, *, preflight: bool = True) -> float:
    payer = Keypair()
    ledger.airdrop(payer.pubkey(), 10**6 * SOL)
    start = time.perf_counter()
    for i in range(n):
        tx = _transfer(payer, ledger.latest_blockhash()[0], SOL + i)
        outcome = ledger.submit(tx, preflight=preflight)
        assert outcome.err is None, outcome
    return n / (time.perf_counter() - start)


def start_serve(state_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A ``dgpu chain serve`` child and its ready line."""
    proc = subprocess.Popen(
        [*SERVE, "--port", "0", "--json", "--state-dir", str(state_dir), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    info: dict[str, str] = json.loads(proc.stdout.readline())
    return proc, info


SERVE = [sys.executable, "-m", "dgpu.cli.main", "chain", "serve"]


def call(http: httpx.Client, method: str, *params: object) -> Any:
    """One JSON-RPC call to ``dgpu chain serve``; its result."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = http.post("/", json=body).json()
    assert "result" in answer, answer
    return answer["result"]


def latest_blockhash(http: httpx.Client) -> Hash:
    return Hash.from_string(call(http, "getLatestBlockhash")["value"]["blockhash"])


def send(http: httpx.Client, tx: Transaction | VersionedTransaction) -> None:
    """``sendTransaction`` (answered after the journal commit)."""
    call(http, "sendTransaction", base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"})


def bench_serve(n: int, tmp: Path) -> float:
    proc, info = start_serve(tmp / "serve", "--no-escrow")
    try:
        url = info["rpc_url"]
        with httpx.Client(base_url=url, timeout=30) as http:
            payer = Keypair()
            call(http, "requestAirdrop", str(payer.pubkey()), 10**5 * SOL)
            start = time.perf_counter()
            for i in range(n):
                send(http, _transfer(payer, latest_blockhash(http), SOL + i))
            return n / (time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait()


async def settle_world(
    chain: Chain, authority: Keypair, channels: int, rounds: int, with_table: bool
) -> tuple[Keypair, list[list[Settlement]], AddressLookupTableAccount | None]:
    """``channels`` open channels (one renter each) and ``rounds`` batches of their
    receipts, cumulative rising each round; the lookup table when ``with_table``."""
    admin = Keypair()
    await chain.request_airdrop(admin.pubkey(), 1_000 * SOL)
    mint = await ln.create_mint(chain, admin)
    client = EscrowClient(chain)
    treasury, provider, submitter = Keypair(), Keypair(), Keypair()
    await ln.fund_wallet(chain, treasury.pubkey(), mint=mint)
    await client.initialize(
        authority, admin=admin.pubkey(), payer=admin, treasury=treasury.pubkey(),
        mints=[mint.address],
    )  # fmt: skip
    await ln.fund_wallet(chain, provider.pubkey(), lamports=SOL, mint=mint)
    await chain.request_airdrop(submitter.pubkey(), 100 * SOL)
    opened = []
    for _ in range(channels):
        renter = Identity.generate()
        keypair = renter.to_solders()
        await ln.fund_wallet(chain, keypair.pubkey(), lamports=SOL, mint=mint, tokens=10**15)
        state = (
            await client.open_channel(
                keypair, provider=provider.pubkey(), mint=mint.address, deposit=10**15,
                expiry=await chain.unix_time() + 86_400,
            )
        ).state  # fmt: skip
        opened.append((renter, state))
    batches = [
        [
            Settlement.for_channel(
                state, (r + 1) * 10**6, state.receipt((r + 1) * 10**6).sign(renter)
            )
            for renter, state in opened
        ]
        for r in range(rounds)
    ]
    table = None
    if with_table:
        table = await client.create_lookup_table(admin, lookup_table_entries(batches[0]))
        await chain.request_airdrop(admin.pubkey(), 1)  # one slot on: the table is usable
    return submitter, batches, table


def bench_settle_in_process(rounds: int, with_table: bool) -> float:
    async def run() -> float:
        authority = Keypair()
        chain = LiteSVMChain(upgrade_authority=authority)
        size = receipts_per_transaction(with_lookup_table=with_table)
        payer, batches, table = await settle_world(chain, authority, size, rounds, with_table)
        start = time.perf_counter()
        for items in batches:
            tx = settle_transaction(payer, items, await chain.latest_blockhash(), table)
            await chain.send_transaction(tx)
        return rounds / (time.perf_counter() - start)

    return trio.run(run)


def bench_settle_serve(rounds: int, with_table: bool, tmp: Path) -> float:
    proc, info = start_serve(tmp / f"settle-{with_table}")
    try:
        url = info["rpc_url"]
        authority = load_identity(Path(info["mint_authority_keyfile"])).to_solders()

        async def setup() -> tuple[
            Keypair, list[list[Settlement]], AddressLookupTableAccount | None
        ]:
            async with RpcChain(url, poll_interval=0.02) as chain:
                size = receipts_per_transaction(with_lookup_table=with_table)
                return await settle_world(chain, authority, size, rounds, with_table)

        payer, batches, table = trio.run(setup)
        with httpx.Client(base_url=url, timeout=30) as http:
            start = time.perf_counter()
            for items in batches:
                send(http, settle_transaction(payer, items, latest_blockhash(http), table))
            return rounds / (time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait()


def clock_write_ms(accounts: int, writes: int = 50) -> float:
    """One ``warp_to_slot`` of bare LiteSVM holding ``accounts`` accounts, in ms."""
    svm = LiteSVM()
    for _ in range(accounts):
        svm.set_account(Pubkey.new_unique(), Account(SOL, b"", Pubkey.default(), False, 0))
    start = time.perf_counter()
    for slot in range(2, 2 + writes):
        svm.warp_to_slot(slot)
    return (time.perf_counter() - start) / writes * 1e3


def journal_rate(path: Path, rows: int, timed: int = 1000) -> float:
    """Commits per second of the journal alone (no LiteSVM) once it holds ``rows``
    transfer-like commits (a new account each): the last ``timed`` of them."""
    journal = Journal(path)
    payer = Pubkey.new_unique()
    meta = {"fee": 5000, "logMessages": ["Program 11111111111111111111111111111111 success"]}
    start = time.perf_counter()
    for slot in range(1, rows + 1):
        if slot == rows - timed + 1:
            start = time.perf_counter()
        dest, sig = Pubkey.new_unique(), os.urandom(64)
        accounts = [
            (payer, Account(SOL * 10**6 - slot, b"", Pubkey.default(), False, 0)),
            (dest, Account(SOL, b"", Pubkey.default(), False, 0)),
        ]
        tx = TxRow(sig, slot, 0, None, 5000, 150, True, os.urandom(215), meta)
        block = BlockRow(slot, str(Hash.new_unique()), slot - 1, str(Hash.default()), 0, sig)
        journal.write(Commit(accounts, tx, [payer, dest], block, {"slot": slot}))
    rate = min(timed, rows) / (time.perf_counter() - start)
    journal.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--settles", type=int, default=300)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    n = args.transfers
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(f"SOL transfers, {n} each (tx/s, higher is better)")
        print(f"  {'litesvm (in-process, the ceiling)':40} {bench_litesvm(n):8.0f}")
        print(f"  {'ledger (memory journal)':40} {fill(SvmLedger(), n):8.0f}")
        print(
            f"  {'ledger (file journal, SQLite WAL)':40} "
            f"{fill(SvmLedger(path=tmp / 'bench.sqlite'), n):8.0f}"
        )
        print(f"  {'dgpu chain serve (HTTP, sequential)':40} {bench_serve(n, tmp):8.0f}")
        print(f"escrow settle batches, {args.settles} each (transactions/s; receipts/s)")
        for with_table in (False, True):
            size = receipts_per_transaction(with_lookup_table=with_table)
            kind = f"{'v0 + lookup table' if with_table else 'legacy'}, {size} receipts"
            here = bench_settle_in_process(args.settles, with_table)
            there = bench_settle_serve(args.settles, with_table, tmp)
            print(f"  {kind:28} in-process {here:6.0f} tx/s {here * size:7.0f} receipts/s")
            print(f"  {'':28} chain serve {there:5.0f} tx/s {there * size:7.0f} receipts/s")
        print("restart: open a file ledger of N transactions (N accounts)")
        for size in (int(s) for s in args.sizes.split(",")):
            path = tmp / f"restart-{size}.sqlite"
            ledger = SvmLedger(path=path)
            rate = fill(ledger, size, preflight=False)  # faster to build; same journal
            ledger.close()
            start = time.perf_counter()
            reopened = SvmLedger(path=path)
            elapsed = time.perf_counter() - start
            assert reopened.transaction_count() == size + 1  # and the faucet's airdrop
            reopened.close()
            mb = sum(f.stat().st_size for f in tmp.glob(f"restart-{size}.sqlite*")) / 1e6
            print(
                f"  N={size:>7}  restart {elapsed * 1e3:8.1f} ms   ledger {mb:7.1f} MB"
                f"   (filled at {rate:.0f} tx/s on average)"
            )
        print("why filling slows: the per-transaction costs at N accounts / N transactions")
        for size in (int(s) for s in args.sizes.split(",")):
            journal = journal_rate(tmp / f"journal-{size}.sqlite", size)
            print(
                f"  N={size:>7}  one LiteSVM Clock write {clock_write_ms(size):6.2f} ms"
                f"   journal alone {journal:6.0f} commits/s"
            )


if __name__ == "__main__":
    main()
