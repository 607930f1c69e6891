"""Coordinator replicas (issue 19): search and receipt intake with one and two replicas on
PostgreSQL beside one on sqlite, in one run; and how long the settler's failover takes.

    python -m benchmarks.bench_replicas [--offers 5000] [--requests 2000] [--receipts 8000]

(from the repository's root: it uses the tests' PostgreSQL cluster and escrow world).

1. **Throughput**: a throwaway PostgreSQL cluster (Debian's binaries, ``initdb``/``pg_ctl``
   in a temporary directory, like the tests) and an sqlite file hold the same signed offers;
   ``dgpu coordinator serve`` processes serve them: one on sqlite (the baseline), one on
   PostgreSQL, two on PostgreSQL with the clients spread over both. Mixed searches by C
   concurrent clients and signed batches of receipts (8 provider keys); CPU time of the
   coordinator processes and of PostgreSQL is read from /proc for each run.
2. **Failover**: a real chain (``dgpu chain serve`` with the escrow program) and two
   replicas with settlement on, for each settler-lease term: the lease holder is killed
   with SIGKILL, receipts for real channels go to the survivor, and the clock runs until
   the survivor holds the lease and until the chain has paid every receipt.

The box has 2 cores: client, coordinators and PostgreSQL share them, so a second replica
adds no CPU; what it can show here is the cost of sharing state through the database
(replay guard, rate-limit buckets, leases), not a speed-up. The load average is printed at
the start and the end. Prints figures only; no pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio
from dgpu.contracts_client import localnet
from dgpu.contracts_client.chain import RpcChain
from dgpu.node.coordinator_client import CoordinatorClient
from dgpu.protocol.keyfile import load_identity, save_identity

from benchmarks.bench_coordinator import (
    BATCH,
    Ingest,
    Latencies,
    cpu_seconds,
    http_batch_ingest,
    http_searches,
    load_line,
    load_offers,
    make_receipts,
    search_plans,
)
from tests.contracts_client.support import serve_node
from tests.coordinator.escrow_world import DGPU, World, make_world
from tests.coordinator.pg import Cluster, running_cluster
from tests.coordinator.test_replicas import replica

# no price snapshot or rescoring during a run, and no prober dialling the bench's providers
# (they listen nowhere)
QUIET = ("--snapshot-every", "3600", "--no-probe")
UNLIMITED = (
    *("--ip-rate", "1e9", "--ip-burst", "1000000000"),
    *("--key-rate", "1e9", "--key-burst", "1000000000"),
)


def cluster_cpu(cluster: Cluster) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster and its live children
    (the pooled backends the coordinators hold open for the whole run)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    total = 0.0
    for pid in [postmaster, *map(int, children)]:
        with suppress(FileNotFoundError):  # a backend that just ended
            total += cpu_seconds(pid)
    return total


@dataclass(frozen=True)
class Run:
    label: str
    search: Latencies
    search_cpu_ms: float
    search_db_cpu_ms: float
    ingest: Ingest
    ingest_db_cpu_s: float


def measure(
    label: str,
    db: Path | str,
    replicas: int,
    cluster: Cluster | None,
    args: argparse.Namespace,
) -> Run:
    def db_cpu() -> float:
        return cluster_cpu(cluster) if cluster is not None else 0.0

    plans = search_plans(args.requests)
    with ExitStack() as stack:
        started = [
            stack.enter_context(
                replica(str(db), f"r{k}", *QUIET, "--settle-every", "0", *UNLIMITED)
            )
            for k in range(replicas)
        ]
        urls = [url for url, _ in started]
        pids = [proc.pid for _, proc in started]
        for url in urls:  # warm up
            httpx.get(f"{url}/api/v1/offers", timeout=60).raise_for_status()
        cpu, dbcpu = sum(map(cpu_seconds, pids)), db_cpu()
        search = asyncio.run(http_searches(urls, plans, args.concurrency))
        search_cpu_ms = (sum(map(cpu_seconds, pids)) - cpu) * 1000 / len(plans)
        search_db_ms = (db_cpu() - dbcpu) * 1000 / len(plans)
        dbcpu = db_cpu()
        ingest = asyncio.run(http_batch_ingest(urls, pids, make_receipts(args.receipts), BATCH))
        ingest_db_s = db_cpu() - dbcpu
    return Run(label, search, search_cpu_ms, search_db_ms, ingest, ingest_db_s)


def throughput_section(tmp: Path, cluster: Cluster, args: argparse.Namespace) -> None:
    now = int(time.time())
    sqlite_db = tmp / "bench.sqlite"
    pg_db = cluster.new_database("bench")
    for db in (sqlite_db, pg_db):
        started = time.perf_counter()
        asyncio.run(load_offers(db, args.offers, args.superseded, now))
        kind = "sqlite" if db == sqlite_db else "PostgreSQL"
        if db == pg_db:  # the state autovacuum keeps (migration 7 tunes it for offers)
            cluster.query(pg_db, "VACUUM ANALYZE offers")
        print(
            f"  (loaded {args.offers + args.superseded:,} offers into {kind} in "
            f"{time.perf_counter() - started:.0f} s)"
        )
    runs = [
        measure("sqlite, 1 replica", sqlite_db, 1, None, args),
        measure("PostgreSQL, 1 replica", pg_db, 1, cluster, args),
        measure("PostgreSQL, 2 replicas", pg_db, 2, cluster, args),
    ]
    base = runs[0]
    print(
        f"search ({args.offers:,} live current offers, {args.concurrency} clients spread over "
        "the replicas) and batch intake (8 provider keys, batches of 200):"
    )
    for run in runs:
        print(
            f"  {run.label:24s} search {run.search.line()}  "
            f"({run.search.rate / base.search.rate:.2f} x sqlite); CPU a search: coordinators "
            f"{run.search_cpu_ms:.2f} ms + PostgreSQL {run.search_db_cpu_ms:.2f} ms"
        )
        print(
            f"  {'':24s} intake {run.ingest.wall_rate:6,.0f} receipts/s "
            f"({run.ingest.wall_rate / base.ingest.wall_rate:.2f} x sqlite); CPU a receipt: "
            f"coordinators {run.ingest.server_cpu_s * 1e6 / run.ingest.receipts:.0f} us + "
            f"PostgreSQL {run.ingest_db_cpu_s * 1e6 / run.ingest.receipts:.0f} us"
        )


async def _settling(http: httpx.AsyncClient) -> bool:
    return bool((await http.get("/healthz")).json()["settling"])


async def _all_paid(http: httpx.AsyncClient) -> bool:
    return bool((await http.get("/api/v1/settlements")).json()["pending_channels"] == 0)


async def _until(url: str, done: Callable[[httpx.AsyncClient], Awaitable[bool]]) -> None:
    """Poll ``done`` every 50 ms (the figures' resolution)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while True:
            if await done(http):
                return
            await trio.sleep(0.05)


@dataclass(frozen=True)
class Failover:
    lease_s: float
    takeover_s: float
    paid_s: float
    receipts: int


async def failover_once(
    cluster: Cluster, world: World, chain_args: Sequence[str], lease_s: float, channels: int
) -> Failover:
    """Two settling replicas; SIGKILL the lease holder, hand receipts to the survivor, time
    until it holds the lease and until nothing is left to pay."""
    db = cluster.new_database("failover")
    renter, provider = world.renters[0], world.providers[0]
    opened = [await world.open(renter, provider, deposit=DGPU) for _ in range(channels)]
    settle = ("--settle-every", "0.5", "--settler-lease", f"{lease_s:g}")
    with ExitStack() as stack:
        url_a, proc_a = stack.enter_context(replica(db, "first", *QUIET, *chain_args, *settle))
        url_b, _ = stack.enter_context(replica(db, "second", *QUIET, *chain_args, *settle))
        with trio.fail_after(60):
            await _until(url_a, _settling)
        proc_a.send_signal(signal.SIGKILL)
        proc_a.wait(30)
        killed = trio.current_time()
        async with httpx.AsyncClient(base_url=url_b, timeout=60) as http:
            client = CoordinatorClient(http, provider)
            for k, channel in enumerate(opened):
                await client.post_receipt(world.receipt(renter, channel, (k + 1) * 1_000_000))
        with trio.fail_after(120):
            await _until(url_b, _settling)
            takeover = trio.current_time() - killed
            await _until(url_b, _all_paid)
            paid = trio.current_time() - killed
    return Failover(lease_s, takeover, paid, channels)


async def failover_section(cluster: Cluster, tmp: Path, leases: Sequence[float]) -> None:
    with serve_node(tmp / "chain") as node:
        authority = load_identity(node.mint_authority_keyfile).to_solders()
        mint = localnet.TokenMint(node.mint, authority)
        async with RpcChain(node.url, poll_interval=0.05) as chain:
            world = await make_world(
                chain,
                providers=1,
                renters=1,
                label="bench-failover",
                mint=mint,
                authority=authority,
            )
            key = tmp / "settler.json"
            save_identity(world.settler, key)
            chain_args = ["--rpc", node.url, "--key", str(key), "--poll-interval", "0.05"]
            results = [
                await failover_once(cluster, world, chain_args, lease, channels=4)
                for lease in leases
            ]
    print(
        "settler failover (SIGKILL of the lease holder; renewals every third of the term,"
        " settlement rounds every 0.5 s):"
    )
    for r in results:
        print(
            f"  lease {r.lease_s:4g} s: the survivor holds the lease after {r.takeover_s:5.2f} s"
            f" (bound: term + a renewal interval = {r.lease_s * 4 / 3:.1f} s); its "
            f"{r.receipts} receipts paid on chain {r.paid_s:5.2f} s after the kill"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=5_000)
    parser.add_argument("--superseded", type=int, default=500)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--receipts", type=int, default=8_000)
    parser.add_argument("--leases", default="3,15", help="settler-lease terms to fail over")
    args = parser.parse_args()
    print(
        f"machine: 2 cores shared by the clients, the coordinators and PostgreSQL (load "
        f"average {load_line()} at the start): a second replica adds no CPU here, so the "
        "PostgreSQL rows show what sharing state through the database costs, not a speed-up"
    )
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as name:
        tmp = Path(name)
        # its own directory: the server runs as the postgres user, who cannot enter ``tmp``
        with running_cluster(Path(tempfile.mkdtemp(prefix="bench-replicas-pg-"))) as cluster:
            throughput_section(tmp, cluster, args)
            leases = [float(x) for x in args.leases.split(",") if x]
            trio.run(failover_section, cluster, tmp, leases)
    print(f"load average at the end: {load_line()}")


if __name__ == "__main__":
    main()
