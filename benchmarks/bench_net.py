"""Network figures of the node layer on this machine (loopback only).

    python benchmarks/bench_net.py [--nodes 10 30] [--echo 1000] [--bulk-mb 200]

1. **Connection setup**: two fresh libp2p hosts in one process, dial + Noise + Yamux.
2. **Request/response** on one open stream between two node processes (framed
   canonical messages), p50/p99.
3. **DHT find**: a bootstrap plus N node processes all advertising one model; each node in
   turn runs ``find_offers`` (providers from the DHT, offers from the providers), p50/p95;
   then all nodes at once.
4. **Gossip**: one node publishes offers at 5/s; fraction delivered to the other nodes and
   latency, p50/p95.
5. **Bulk**: the bulk channel (TCP, ticket, sha256 verification, file written) next to raw
   trio TCP and a libp2p stream (Yamux over Noise) on the same loopback, MB/s.

Prints figures only; no pass/fail.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import trio
from dgpu.node.net.bulk import (
    BulkGrant,
    BulkGrants,
    ContentStore,
    fetch,
    make_ticket,
    serve_bulk,
)
from dgpu.node.net.interface import MessageStream, PeerRef
from dgpu.node.net.libp2p import Libp2pConfig, Libp2pNetwork, open_libp2p_network
from dgpu.node.net.libp2p.probe import ProbeProcess
from dgpu.protocol import Identity

MB = 1024 * 1024


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(label: str, text: str) -> None:
    print(f"{label:<44} {text}", flush=True)


async def bench_connect(rounds: int) -> None:
    samples = []
    for i in range(rounds):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(open_libp2p_network(Identity.from_label(f"ca{i}")))
            b = await stack.enter_async_context(open_libp2p_network(Identity.from_label(f"cb{i}")))
            start = time.perf_counter()
            await b.connect(_ref(a))
            samples.append((time.perf_counter() - start) * 1000)
    line(
        "connection setup (Noise+Yamux), in process",
        f"p50 {pct(samples, 50):.1f} ms  p99 {pct(samples, 99):.1f} ms  ({rounds} fresh pairs)",
    )


def _ref(net: Libp2pNetwork) -> PeerRef:
    return PeerRef(net.peer_id, tuple(net.listen_addrs))


async def bench_echo(count: int) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(ProbeProcess.spawn("echo-a"))
        b = await stack.enter_async_context(ProbeProcess.spawn("echo-b"))
        answer = await b.command("echo", peer=a.peer_id, addrs=[a.multiaddr], n=count, wait=300)
        rtts = answer["rtt_ms"]
        line("connection setup, across processes", f"{answer['connect_ms']:.1f} ms")
        line(
            "request/response on an open stream",
            f"p50 {pct(rtts, 50):.2f} ms  "
            f"p99 {pct(rtts, 99):.2f} ms  ({count} round trips, 2 processes)",
        )


async def bench_swarm(nodes: int, gossip_count: int) -> None:
    async with AsyncExitStack() as stack:
        start = time.perf_counter()
        boot = await stack.enter_async_context(ProbeProcess.spawn("swarm-boot"))
        probes: list[ProbeProcess | None] = [None] * nodes

        async def spawn(i: int) -> None:
            probes[i] = await stack.enter_async_context(
                ProbeProcess.spawn(f"swarm-{i}", bootstrap=(boot.multiaddr,), start_timeout=300)
            )

        async with trio.open_nursery() as nursery:
            for i in range(nodes):
                nursery.start_soon(spawn, i)
        peers = [p for p in probes if p is not None]
        line(f"[{nodes} nodes] start", f"{time.perf_counter() - start:.1f} s for all processes")
        async with trio.open_nursery() as nursery:
            for p in peers:
                nursery.start_soon(lambda p=p: p.command("advertise", model="BENCH", wait=300))
        found, times = [], []
        for p in peers:
            answer = await p.command("find", model="BENCH", limit=nodes, timeout=60, wait=120)
            found.append(len(answer.get("peers", [])))
            times.append(answer.get("ms", float("nan")))
        line(
            f"[{nodes} nodes] DHT find, one at a time",
            f"p50 {pct(times, 50):.0f} ms  "
            f"p95 {pct(times, 95):.0f} ms  found {statistics.mean(found):.1f}/{nodes} offers",
        )
        together: list[float] = []
        got: list[int] = []

        async def find(p: ProbeProcess) -> None:
            answer = await p.command("find", model="BENCH", limit=nodes, timeout=60, wait=120)
            together.append(answer.get("ms", float("nan")))
            got.append(len(answer.get("peers", [])))

        async with trio.open_nursery() as nursery:
            for p in peers:
                nursery.start_soon(find, p)
        line(
            f"[{nodes} nodes] DHT find, all at once",
            f"p50 {pct(together, 50):.0f} ms  "
            f"p95 {pct(together, 95):.0f} ms  found {statistics.mean(got):.1f}/{nodes} offers",
        )
        sent = (await peers[0].command("publish", n=gossip_count, rate=5.0, wait=300))["sent"]
        await trio.sleep(3)  # let the last messages arrive before asking
        heard = [(await p.command("heard"))["heard"] for p in peers[1:]]
        delays = [(h[k] - t) * 1000 for h in heard for k, t in sent.items() if k in h]
        fraction = len(delays) / (len(sent) * len(heard))
        line(
            f"[{nodes} nodes] gossip, {gossip_count} msgs at 5/s",
            f"delivered {fraction:.1%}  p50 {pct(delays, 50):.0f} ms  p95 {pct(delays, 95):.0f} ms",
        )


async def bench_bulk(megabytes: int) -> None:
    size = megabytes * MB
    provider, renter = Identity.from_label("bulk-p"), Identity.from_label("bulk-r")
    with tempfile.TemporaryDirectory() as tmp:
        store = ContentStore(Path(tmp) / "store")
        source = Path(tmp) / "blob"
        with source.open("wb") as f:
            for _ in range(megabytes):
                f.write(os.urandom(MB))
        sha, _ = await store.add_file(source)
        grants = BulkGrants()
        grants.grant(BulkGrant(job_id=bytes(16), renter=renter.public_key, max_bytes=size))
        async with trio.open_nursery() as nursery:
            addr = await nursery.start(serve_bulk, store, grants, provider)
            ticket = make_ticket(
                renter,
                job_id=bytes(16),
                server=provider.public_key,
                op="get",
                sha256=sha,
                size=size,
                expires_at=int(time.time()) + 600,
            )
            start = time.perf_counter()
            await fetch(addr, ticket, Path(tmp) / "copy")
            bulk = size / MB / (time.perf_counter() - start)
            raw = await _raw_tcp(size)
            nursery.cancel_scope.cancel()
    stream = await _libp2p_stream(min(size, 64 * MB))
    line(f"bulk fetch {megabytes} MB (verified, to disk)", f"{bulk:.0f} MB/s")
    line("raw trio TCP, same loopback", f"{raw:.0f} MB/s")
    line("libp2p stream (Yamux over Noise)", f"{stream:.0f} MB/s")


async def _raw_tcp(size: int) -> float:
    chunk = os.urandom(MB)
    done = trio.Event()
    elapsed = [0.0]

    async def sink(stream: trio.SocketStream) -> None:
        received, start = 0, time.perf_counter()
        while received < size:
            data = await stream.receive_some(MB)
            if not data:
                break
            received += len(data)
        elapsed[0] = time.perf_counter() - start
        done.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, sink, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        for _ in range(size // MB):
            await stream.send_all(chunk)
        await done.wait()
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return size / MB / elapsed[0]


async def _libp2p_stream(size: int) -> float:
    chunk = os.urandom(64 * 1024)
    done = trio.Event()
    elapsed = [0.0]
    config = Libp2pConfig()
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(
            open_libp2p_network(Identity.from_label("tp-a"), config)
        )
        b = await stack.enter_async_context(
            open_libp2p_network(Identity.from_label("tp-b"), config)
        )

        async def sink(stream: MessageStream, peer: str) -> None:
            raw = stream._stream  # type: ignore[attr-defined]
            received, start = 0, time.perf_counter()
            while received < size:
                data = await raw.receive_some(1 << 20)
                if not data:
                    break
                received += len(data)
            elapsed[0] = time.perf_counter() - start
            done.set()

        a.serve("/bench/throughput/1", sink)
        raw = await b.open_raw_stream(_ref(a), "/bench/throughput/1")
        for _ in range(size // len(chunk)):
            await raw.send_all(chunk)
        with trio.fail_after(120):
            await done.wait()
        await raw.aclose()
    return size / MB / elapsed[0]


async def main(args: argparse.Namespace) -> None:
    print(f"bench_net on {os.cpu_count()} cores, loopback only\n", flush=True)
    await bench_connect(args.connect_rounds)
    await bench_echo(args.echo)
    for nodes in args.nodes:
        await bench_swarm(nodes, args.gossip)
    await bench_bulk(args.bulk_mb)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--echo", type=int, default=1000)
    parser.add_argument("--gossip", type=int, default=50)
    parser.add_argument("--connect-rounds", type=int, default=20)
    parser.add_argument("--bulk-mb", type=int, default=200)
    logging.basicConfig(level=logging.ERROR)
    trio.run(main, parser.parse_args())
