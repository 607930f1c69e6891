"""Coordinator figures: offer search with 10,000 live offers, receipt ingest on one core.

    python benchmarks/bench_coordinator.py [--offers 10000] [--requests 3000] [--receipts 6000]

1. **Search**: a real ``dgpu coordinator serve`` process over an sqlite database holding N
   live signed offers, each provider's current one (plus superseded older offers, which a
   search must skip); mixed searches (model, count, max price, region, sort, pages) over
   HTTP by C concurrent clients and by one, beside the *same* queries straight against the
   store at the same concurrency (the baseline: the issue's goal is HTTP p99 within 3x of
   the store's). The server's CPU time per request (from /proc) against the store's time
   per query says what HTTP, routing, limits and JSON add.
2. **Receipt ingest**: raw ed25519 verification (PyNaCl/libsodium) measured in the same run,
   then signed batches of receipts (``POST /api/v1/receipts/batch``) over HTTP: receipts per
   second of wall clock, and per second of the server's own CPU time (= on one core, what
   the issue's goal names), both beside the raw rate; one receipt a request for comparison;
   and the in-process pipeline (no HTTP).

The box has 2 cores shared by the client, the server and whatever else runs: the load
average is printed at the start and the end, and every figure moves with it.
Prints figures only; no pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import nacl.signing
from dgpu.coordinator.api.offers import parse_offer_query
from dgpu.coordinator.api.receipts import parse_receipt_body
from dgpu.coordinator.auth import ReplayGuard, verify_request
from dgpu.coordinator.market import Market
from dgpu.coordinator.store import OfferQuery, open_store
from dgpu.node.coordinator_client import CoordinatorClient
from dgpu.pricing import DEFAULT_RATE_CARD
from dgpu.protocol.codec import encode
from dgpu.protocol.http_auth import sign_request
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer, Receipt
from dgpu.protocol.offers import OfferTerms, make_offer
from dgpu.protocol.signing import sign_receipt

MODELS = [
    ("NVIDIA GeForce RTX 4090", 24_564, 400_000),
    ("NVIDIA GeForce RTX 4080", 16_376, 290_000),
    ("NVIDIA A100-SXM4-80GB", 81_920, 1_100_000),
    ("NVIDIA H100 80GB HBM3", 81_559, 1_500_000),
    ("Apple M3 Ultra", 98_304, 450_000),
    ("Apple M2 Ultra", 65_536, 380_000),
]
REGIONS = ["eu-west", "eu-central", "us-east", "us-west", "ap-south", "ap-east"]
BATCH = 200
MSGPACK = {"Content-Type": "application/msgpack"}
_TICK = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def load_line() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def random_offer(rng: random.Random, provider: Identity, now: int) -> tuple[str, Offer]:
    model, vram, price = rng.choice(MODELS)
    offer = make_offer(
        provider,
        OfferTerms(
            gpu_model=model,
            gpu_count=rng.choice([1, 1, 2, 4, 8]),
            vram_mb=vram,
            price_per_gpu_second=int(price * rng.uniform(0.7, 1.5)),
            mint=bytes(32),
            region=rng.choice(REGIONS),
            max_duration_s=86_400,
            simulated=rng.random() < 0.5,
        ),
        multiaddrs=["/ip4/127.0.0.1/tcp/4001"],
        now=now,
        ttl_s=3600,
    )
    return model, offer


async def load_offers(db: Path | str, count: int, superseded: int, now: int) -> None:
    """``count`` providers with one current offer each; the first ``superseded`` of them
    also have an older offer (signed a minute earlier, still live) that they replaced."""
    rng = random.Random(7)
    async with open_store(db) as store:
        market = Market(store, DEFAULT_RATE_CARD, availability_window_s=86400)
        for k in range(count):
            provider = Identity.from_label(f"bench-provider-{k}")
            versions = [now - 60, now] if k < superseded else [now]
            for created in versions:
                model, offer = random_offer(rng, provider, created)
                await store.offers.ingest(
                    offer,
                    encode(offer),
                    model_key=market.model_key(model),
                    source="direct",
                    now=now,
                )
        await market.rescore_all(now)


@contextmanager
def serve_process(db: Path | str, *extra: str) -> Iterator[tuple[str, int]]:
    """``dgpu coordinator serve`` in its own process (client and server do not share a
    GIL), limits out of the way; (url, pid)."""
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dgpu"),
            *("coordinator", "serve", "--listen", "127.0.0.1:0", "--db", str(db)),
            *("--settle-every", "0", "--snapshot-every", "3600"),
            # the bench's providers listen nowhere: no prober dialling them during the run
            "--no-probe",
            *("--ip-rate", "1e9", "--ip-burst", "1000000000"),
            *("--key-rate", "1e9", "--key-burst", "1000000000", "--json", *extra),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["url"]
        httpx.get(f"{url}/healthz", timeout=120).raise_for_status()
        yield url, server.pid
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(60)


def search_params(rng: random.Random) -> dict[str, str]:
    params: dict[str, str] = {"limit": "20"}
    if rng.random() < 0.8:
        params["gpu_model"] = rng.choice(MODELS)[0]
    if rng.random() < 0.4:
        params["count"] = str(rng.choice([1, 2, 4, 8]))
    if rng.random() < 0.5:
        params["max_price"] = str(rng.randint(300_000, 2_000_000))
    if rng.random() < 0.3:
        params["region"] = rng.choice(REGIONS)
    if rng.random() < 0.2:
        params["min_score"] = "0.3"
    params["sort"] = rng.choice(["price", "price", "score", "-price", "newest"])
    if rng.random() < 0.2:
        params["offset"] = str(rng.choice([20, 40, 100]))
    return params


def search_plans(total: int) -> list[dict[str, str]]:
    rng = random.Random(11)
    return [search_params(rng) for _ in range(total)]


@dataclass(frozen=True)
class Latencies:
    elapsed_s: float
    ms: list[float]
    cpu_ms: float = 0.0
    """CPU time per query of the process that ran them (the store's own)."""

    @property
    def rate(self) -> float:
        return len(self.ms) / self.elapsed_s

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p99(self) -> float:
        return percentile(self.ms, 99)

    def line(self) -> str:
        return f"{self.rate:6,.0f}/s  p50 {self.p50:6.2f} ms  p99 {self.p99:6.2f} ms"


async def http_searches(
    urls: Sequence[str], plans: list[dict[str, str]], concurrency: int
) -> Latencies:
    """Clients spread over ``urls`` (replicas) round-robin, each running its share."""
    latencies: list[float] = []

    async def worker(url: str, chunk: list[dict[str, str]]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for params in chunk:
                started = time.perf_counter()
                response = await http.get("/api/v1/offers", params=params)
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(
        *(worker(urls[k % len(urls)], plans[k::concurrency]) for k in range(concurrency))
    )
    return Latencies(time.perf_counter() - started, latencies)


async def store_searches(
    db: Path | str, plans: list[dict[str, str]], now: int, concurrency: int
) -> Latencies:
    """The same searches straight against the store (the handler's query parser, no
    HTTP), ``concurrency`` at a time on one connection as the server's handlers run."""
    latencies: list[float] = []
    async with open_store(db) as store:
        market = Market(store, DEFAULT_RATE_CARD, availability_window_s=86400)
        queries = [parse_offer_query(p, market, 200, coord_now=now) for p in plans]

        async def worker(chunk: list[OfferQuery]) -> None:
            for query in chunk:
                started = time.perf_counter()
                await store.offers.search(query, now)
                latencies.append((time.perf_counter() - started) * 1000)

        await store.offers.search(queries[0], now)  # warm the cache like the server's
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(queries[k::concurrency]) for k in range(concurrency)))
        cpu_ms = (time.process_time() - cpu) * 1000 / len(queries)
        return Latencies(time.perf_counter() - started, latencies, cpu_ms)


def make_receipts(count: int, providers: int = 8) -> list[tuple[Identity, Receipt]]:
    renter = Identity.from_label("bench-renter")
    keys = [Identity.from_label(f"bench-rc-provider-{k}") for k in range(providers)]
    made = []
    for k in range(count):
        receipt = Receipt(
            job_id=os.urandom(16),
            seq=1,
            renter=renter.public_key,
            program_id=bytes(32),
            channel=os.urandom(32),
            open_nonce=1,
            cumulative=1_000 + k,
        )
        made.append((keys[k % providers], sign_receipt(receipt, renter)))
    return made


async def ingest_pipeline(db: Path, receipts: list[tuple[Identity, Receipt]]) -> float:
    """Receipts/s of auth check + decode + renter signature + upsert, one core, no HTTP."""
    requests = []
    now = int(time.time())
    for provider, receipt in receipts:
        body = encode(receipt)
        headers = sign_request(provider, "POST", "/api/v1/receipts", body, timestamp=now)
        requests.append((headers, body))
    guard = ReplayGuard(60)
    async with open_store(db) as store:
        started = time.perf_counter()
        for headers, body in requests:
            signer = await verify_request(
                headers, "POST", "/api/v1/receipts", "", body, now=now, window_s=60, guard=guard
            )
            receipt = parse_receipt_body(body)
            await store.channels.ingest(receipt, body, provider=signer, now=now)
        return len(requests) / (time.perf_counter() - started)


def raw_verify_rate(count: int) -> float:
    """Verifications per second of this process's CPU time: one core's rate, whatever else
    runs on the box (wall-clock time would count the waits for a core too)."""
    key = nacl.signing.SigningKey.generate()
    signed = [key.sign(os.urandom(96)) for _ in range(count)]
    verify = key.verify_key.verify
    started = time.process_time()
    for item in signed:
        verify(item)
    return count / (time.process_time() - started)


async def http_ingest(
    url: str, receipts: list[tuple[Identity, Receipt]], concurrency: int
) -> float:
    async def worker(chunk: list[tuple[Identity, Receipt]]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for provider, receipt in chunk:
                await CoordinatorClient(http, provider).post_receipt(receipt)

    started = time.perf_counter()
    await asyncio.gather(*(worker(receipts[k::concurrency]) for k in range(concurrency)))
    return len(receipts) / (time.perf_counter() - started)


def signed_batches(
    receipts: list[tuple[Identity, Receipt]], per_request: int
) -> dict[str, list[tuple[dict[str, str], bytes, int]]]:
    """Each provider's receipts as ready-signed batch requests (headers, body, count): the
    client's share of the work is done before the clock starts."""
    mine: dict[str, list[Receipt]] = {}
    keys: dict[str, Identity] = {}
    for provider, receipt in receipts:
        mine.setdefault(provider.address, []).append(receipt)
        keys[provider.address] = provider
    now = int(time.time())
    requests: dict[str, list[tuple[dict[str, str], bytes, int]]] = {}
    for address, theirs in mine.items():
        for start in range(0, len(theirs), per_request):
            chunk = theirs[start : start + per_request]
            body = msgspec.msgpack.encode([encode(r) for r in chunk])
            headers = sign_request(
                keys[address], "POST", "/api/v1/receipts/batch", body, timestamp=now
            )
            requests.setdefault(address, []).append(({**headers, **MSGPACK}, body, len(chunk)))
    return requests


@dataclass(frozen=True)
class Ingest:
    receipts: int
    wall_s: float
    server_cpu_s: float

    @property
    def wall_rate(self) -> float:
        return self.receipts / self.wall_s

    @property
    def core_rate(self) -> float:
        return self.receipts / self.server_cpu_s


async def http_batch_ingest(
    urls: Sequence[str],
    pids: Sequence[int],
    receipts: list[tuple[Identity, Receipt]],
    per_request: int,
) -> Ingest:
    """Receipts through ``POST /api/v1/receipts/batch``, one client per provider key (a
    provider sends its own receipts), providers spread over the replicas ``urls``."""
    requests = signed_batches(receipts, per_request)

    async def worker(url: str, batches: list[tuple[dict[str, str], bytes, int]]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for headers, body, count in batches:
                response = await http.post("/api/v1/receipts/batch", content=body, headers=headers)
                response.raise_for_status()
                accepted = msgspec.json.decode(response.content)["accepted"]
                assert accepted == count, response.text[:300]

    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    started = time.perf_counter()
    await asyncio.gather(
        *(worker(urls[k % len(urls)], batches) for k, batches in enumerate(requests.values()))
    )
    wall = time.perf_counter() - started
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    return Ingest(len(receipts), wall, cpu)


def search_section(db: Path, args: argparse.Namespace, now: int) -> None:
    plans = search_plans(args.requests)
    store = {c: asyncio.run(store_searches(db, plans, now, c)) for c in (1, args.concurrency)}
    with serve_process(db) as (url, pid):
        httpx.get(f"{url}/api/v1/offers", timeout=60).raise_for_status()  # warm up
        http: dict[int, Latencies] = {}
        cpu_ms: dict[int, float] = {}
        client_ms: dict[int, float] = {}
        for c in (1, args.concurrency):
            before, client = cpu_seconds(pid), time.process_time()
            http[c] = asyncio.run(http_searches([url], plans, c))
            cpu_ms[c] = (cpu_seconds(pid) - before) * 1000 / len(plans)
            client_ms[c] = (time.process_time() - client) * 1000 / len(plans)
    print(f"search, {args.offers:,} live current offers (+{args.superseded:,} superseded):")
    for c in (1, args.concurrency):
        print(f"  store, {c} at a time:       {store[c].line()}   <- baseline")
        print(
            f"  HTTP,  {c} client(s):        {http[c].line()}   = p99 "
            f"{http[c].p99 / store[c].p99:.2f} x the store's (goal <= 3 x)"
        )
        print(
            f"         CPU per search: server {cpu_ms[c]:.2f} ms (HTTP, routing, limits, JSON"
            f" and the store) vs store alone {store[c].cpu_ms:.2f} ms; the HTTP client"
            f" (httpx, on the same 2 cores) {client_ms[c]:.2f} ms"
        )


def ingest_section(tmp: Path, args: argparse.Namespace) -> None:
    raw_before = raw_verify_rate(20_000)
    with serve_process(tmp / "ingest-http.sqlite") as (url, pid):
        asyncio.run(http_batch_ingest([url], [pid], make_receipts(BATCH * 8), BATCH))  # warm
        batch = asyncio.run(http_batch_ingest([url], [pid], make_receipts(args.receipts), BATCH))
        single = asyncio.run(http_ingest(url, make_receipts(args.receipts // 4), args.concurrency))
    raw_after = raw_verify_rate(20_000)
    raw = (raw_before + raw_after) / 2
    in_process = asyncio.run(
        ingest_pipeline(tmp / "ingest.sqlite", make_receipts(args.receipts // 2))
    )
    print("receipt intake:")
    print(
        f"  raw ed25519 verify (libsodium via PyNaCl), per CPU second: {raw:,.0f}/s "
        f"(before {raw_before:,.0f}, after {raw_after:,.0f})   <- baseline"
    )
    print(
        f"  batches of {BATCH} over HTTP, 8 provider keys: {batch.wall_rate:,.0f} receipts/s "
        f"wall (client and server share the 2 cores)"
    )
    print(
        f"    per second of the server's CPU (one core): {batch.core_rate:,.0f} receipts/s = "
        f"{batch.core_rate / raw:.2f} x raw (goal >= 0.5 x)"
    )
    print(
        f"  one receipt a request over HTTP ({args.concurrency} clients): {single:,.0f}/s "
        f"(batches: {batch.wall_rate / max(single, 1):.1f} x)"
    )
    print(f"  in-process, one a time, no HTTP (2 verifications + upsert): {in_process:,.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--superseded", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--receipts", type=int, default=12_000)
    args = parser.parse_args()
    now = int(time.time())
    print(
        f"machine: {os.cpu_count()} cores, load average {load_line()} at the start (other "
        "work on the box skews every figure; client and server share the cores)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        started = time.perf_counter()
        asyncio.run(load_offers(db, args.offers, args.superseded, now))
        print(
            f"  (loaded {args.offers + args.superseded:,} signed offers in "
            f"{time.perf_counter() - started:.0f} s)"
        )
        search_section(db, args, now)
        ingest_section(Path(tmp), args)
    print(f"load average at the end: {load_line()}")


if __name__ == "__main__":
    main()
