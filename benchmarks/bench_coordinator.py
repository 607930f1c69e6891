"""Coordinator figures: offer search with 10,000 live offers, receipt ingest on one core.

    python benchmarks/bench_coordinator.py [--offers 10000] [--requests 3000] [--receipts 3000]

1. **Search**: a real hypercorn server (in a thread with its own loop) over an aiosqlite
   database holding N live signed offers; C concurrent HTTP clients send mixed searches
   (model, count, max price, region, sort, pages). Prints requests/s and p50/p90/p99
   latency; the same queries straight against the store (no HTTP) for comparison.
2. **Receipt ingest**: the intake pipeline on one core, without HTTP — request signature
   check, strict decode, renter signature check, database upsert — in receipts/s, next to
   raw ed25519 verification speed (PyNaCl/libsodium) on the same machine; then the same
   through the real server over HTTP, one receipt a request and in signed batches
   (``POST /api/v1/receipts/batch``) as providers send them.

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
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
from dgpu.coordinator.api.receipts import parse_receipt_body
from dgpu.coordinator.auth import ReplayGuard, verify_request
from dgpu.coordinator.market import Market
from dgpu.coordinator.store import OfferQuery, open_store
from dgpu.node.coordinator_client import CoordinatorClient
from dgpu.pricing import DEFAULT_RATE_CARD
from dgpu.protocol.codec import encode
from dgpu.protocol.http_auth import sign_request
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Receipt
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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def load_offers(db: Path, count: int, providers: int, now: int) -> None:
    rng = random.Random(7)
    identities = [Identity.from_label(f"bench-provider-{k}") for k in range(providers)]
    async with open_store(db) as store:
        market = Market(store, DEFAULT_RATE_CARD, availability_window_s=86400)
        for k in range(count):
            model, vram, price = rng.choice(MODELS)
            provider = identities[k % providers]
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
            await store.offers.ingest(
                offer, encode(offer), model_key=market.model_key(model), source="direct", now=now
            )
        await market.rescore_all(now)


@contextmanager
def serve_process(db: Path) -> Iterator[str]:
    """``dgpu coordinator serve`` in its own process (client and server do not share a GIL)."""
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dgpu"),
            "coordinator",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(db),
            "--settle-every",
            "0",
            "--snapshot-every",
            "3600",
            "--ip-rate",
            "1e9",
            "--ip-burst",
            "1000000000",
            "--key-rate",
            "1e9",
            "--key-burst",
            "1000000000",
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["url"]
        httpx.get(f"{url}/healthz", timeout=120).raise_for_status()
        yield url
    finally:
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


async def http_searches(url: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    rng = random.Random(11)
    plans = [search_params(rng) for _ in range(total)]
    latencies: list[float] = []

    async def worker(chunk: list[dict[str, str]]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for params in chunk:
                started = time.perf_counter()
                response = await http.get("/api/v1/offers", params=params)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(worker(plans[k::concurrency]) for k in range(concurrency)))
    return time.perf_counter() - started, latencies


async def store_searches(db: Path, total: int, now: int) -> list[float]:
    rng = random.Random(11)
    latencies: list[float] = []
    async with open_store(db) as store:
        market = Market(store, DEFAULT_RATE_CARD, availability_window_s=86400)
        for _ in range(total):
            p = search_params(rng)
            query = OfferQuery(
                model_key=market.model_key(p["gpu_model"]) if "gpu_model" in p else None,
                count=int(p["count"]) if "count" in p else None,
                max_price=int(p["max_price"]) if "max_price" in p else None,
                region=p.get("region"),
                min_score_bps=3000 if "min_score" in p else None,
                sort=p["sort"],
                limit=20,
                offset=int(p.get("offset", 0)),
            )
            started = time.perf_counter()
            await store.offers.search(query, now)
            latencies.append(time.perf_counter() - started)
    return latencies


def make_receipts(count: int) -> list[tuple[Identity, Receipt]]:
    renter = Identity.from_label("bench-renter")
    providers = [Identity.from_label(f"bench-rc-provider-{k}") for k in range(8)]
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
        made.append((providers[k % 8], sign_receipt(receipt, renter)))
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
    key = nacl.signing.SigningKey.generate()
    messages = [os.urandom(96) for _ in range(count)]
    signed = [key.sign(m) for m in messages]
    verify = key.verify_key.verify
    started = time.perf_counter()
    for item in signed:
        verify(item)
    return count / (time.perf_counter() - started)


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


async def http_batch_ingest(
    url: str, receipts: list[tuple[Identity, Receipt]], per_request: int
) -> float:
    """Receipts/s through ``POST /api/v1/receipts/batch``, one client per provider key
    (a provider sends its own receipts), ``per_request`` receipts a request."""
    by_provider: dict[str, list[Receipt]] = {}
    keys: dict[str, Identity] = {}
    for provider, receipt in receipts:
        by_provider.setdefault(provider.address, []).append(receipt)
        keys[provider.address] = provider

    async def worker(address: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            client = CoordinatorClient(http, keys[address])
            mine = by_provider[address]
            for start in range(0, len(mine), per_request):
                answers = await client.post_receipts(mine[start : start + per_request])
                assert all(a["status"] == "accepted" for a in answers)

    started = time.perf_counter()
    await asyncio.gather(*(worker(a) for a in by_provider))
    return len(receipts) / (time.perf_counter() - started)


def timed(label: str, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    started = time.perf_counter()
    asyncio.run(fn())
    print(f"  ({label}: {time.perf_counter() - started:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--providers", type=int, default=500)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--receipts", type=int, default=3_000)
    args = parser.parse_args()
    now = int(time.time())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} (other work skews every figure)")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        print(f"loading {args.offers} signed offers from {args.providers} providers ...")
        timed("load", lambda: load_offers(db, args.offers, args.providers, now))
        with serve_process(db) as url:
            httpx.get(f"{url}/api/v1/offers", timeout=60).raise_for_status()  # warm up
            elapsed, latencies = asyncio.run(http_searches(url, args.requests, args.concurrency))
            ms = [x * 1000 for x in latencies]
            print(
                f"search over HTTP, {args.offers} live offers, {args.concurrency} clients: "
                f"{args.requests / elapsed:,.0f} req/s; latency"
                f" p50 {statistics.median(ms):.2f} ms, p90 {percentile(ms, 90):.2f} ms,"
                f" p99 {percentile(ms, 99):.2f} ms"
            )
            receipts = make_receipts(args.receipts)
            http_rate = asyncio.run(http_ingest(url, receipts, args.concurrency))
            batch_rate = asyncio.run(
                http_batch_ingest(url, make_receipts(args.receipts), per_request=200)
            )
        store_ms = [x * 1000 for x in asyncio.run(store_searches(db, args.requests, now))]
        print(
            f"search in the store (no HTTP): p50 {statistics.median(store_ms):.2f} ms, "
            f"p99 {percentile(store_ms, 99):.2f} ms,"
            f" {1000 / statistics.mean(store_ms):,.0f} queries/s"
        )
        rate = asyncio.run(
            ingest_pipeline(Path(tmp) / "ingest.sqlite", make_receipts(args.receipts))
        )
        raw = raw_verify_rate(20_000)
        print(
            "receipt ingest, one core, no HTTP (2 signature checks + upsert):"
            f" {rate:,.0f} receipts/s"
        )
        print(
            f"raw ed25519 verify (libsodium via PyNaCl), same machine: {raw:,.0f} verifications/s"
        )
        print(
            f"  -> ingest is {rate / raw * 100:.0f} % of one raw verification's rate "
            f"({raw / 2:,.0f}/s would be the two-verification ceiling)"
        )
        print(
            f"receipt ingest over HTTP ({args.concurrency} clients, server on the same 2 cores): "
            f"{http_rate:,.0f} receipts/s, one receipt a request"
        )
        print(
            f"receipt ingest over HTTP in batches of 200 (8 provider keys): "
            f"{batch_rate:,.0f} receipts/s = {batch_rate / raw:.2f} x the raw verification "
            f"rate (goal >= 0.5 x), {batch_rate / max(http_rate, 1):.1f} x one-a-request"
        )


if __name__ == "__main__":
    main()
