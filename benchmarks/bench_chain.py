"""Transactions per second of the local chain, beside LiteSVM called in-process (the
ceiling), and restart time against ledger size.

    python benchmarks/bench_chain.py [--transfers 2000] [--sizes 1000,10000,100000]

All figures come from the same run:
- ``litesvm``: bare ``LiteSVM.send_transaction`` of a SOL transfer (every row signs a new
  transfer to a new account inside the timed loop, ~0.5 ms of client work);
- ``ledger (memory)``: :class:`SvmLedger` with its in-memory journal (what in-process
  chains use): slots, blockhash window, history, pre/post balances;
- ``ledger (file)``: the same, journaled to SQLite (WAL) before returning, as
  ``dgpu chain serve`` does;
- ``chain serve``: ``sendTransaction`` over HTTP to a ``dgpu chain serve`` child, one
  client, sequential (each answer waits for the journal commit);
- restart: opening a file ledger holding N transactions (each to a new account, so N
  accounts too). Prints figures only; no pass/fail.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from dgpu.contracts_client.chain import SvmLedger
from solders.hash import Hash
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

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


def bench_serve(n: int, tmp: Path) -> float:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dgpu.cli.main",
            "chain",
            "serve",
            "--port",
            "0",
            "--json",
            "--state-dir",
            str(tmp / "serve"),
            "--no-escrow",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["rpc_url"]
        with httpx.Client(base_url=url, timeout=30) as http:

            def call(method: str, *params: object) -> object:
                body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
                answer = http.post("/", json=body).json()
                assert "result" in answer, answer
                return answer["result"]

            payer = Keypair()
            call("requestAirdrop", str(payer.pubkey()), 10**5 * SOL)
            start = time.perf_counter()
            for i in range(n):
                latest = call("getLatestBlockhash")
                assert isinstance(latest, dict)
                blockhash = Hash.from_string(latest["value"]["blockhash"])
                raw = base64.b64encode(bytes(_transfer(payer, blockhash, SOL + i))).decode()
                call("sendTransaction", raw, {"encoding": "base64"})
            return n / (time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=2000)
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
                f"   (filled at {rate:.0f} tx/s)"
            )


if __name__ == "__main__":
    main()
