"""Network figures of the node layer on this machine (loopback only).

    python benchmarks/bench_net.py [--nodes 30 100] [--book on off] [--concurrent 30]
                                   [--swarm-only] [--keep-logs DIR] [--echo 1000]
                                   [--bulk-mb 200]

1. **Connection setup**: two fresh libp2p hosts in one process, dial + Noise + Yamux.
2. **Request/response** on one open stream between two node processes (framed
   canonical messages), p50/p99.
3. **Discovery** (issue 13, "Discovery at scale"): a bootstrap plus N node processes
   (``probe``, fresh peer IDs, started 8 at a time), all advertising one model; no
   coordinator. All share 127.0.0.1, so each takes up to ``--max-per-ip`` inbound
   connections from it (the default 32 a node, meant for distinct hosts, would refuse most
   of the swarm). 30 nodes in turn run ``find_offers(model, limit=N)``, p50/p95 and how
   many of the N offers each found; then 30 other nodes (distinct ones where N allows)
   search at once. Each size once per ``--book`` (``off``: the DHT alone, the search of
   earlier sessions, whose figures are printed beside and labelled as such).
4. **Gossip**: one node publishes offers at 5/s; fraction delivered to the other nodes and
   latency, p50/p95.
5. **Logs** of each swarm at a node's default verbosity (each process's stderr): records
   at WARNING and up, ERROR and up, traceback lines, stray lines; summed over the nodes
   and the most of one node; the five most frequent kinds (logger and message).
6. **Bulk**: the bulk channel (TCP, ticket, sha256 verification, file written) next to raw
   trio TCP and a libp2p stream (Yamux over Noise) on the same loopback, MB/s.

Prints figures only; no pass/fail.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

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
from dgpu.node.net.libp2p.config import ConnectionLimits
from dgpu.node.net.libp2p.probe import ProbeProcess
from dgpu.protocol import Identity

MB = 1024 * 1024
MODEL = "BENCH"
SPAWN_AT_ONCE = 8
"""Processes started at once: 100 at once on 2 cores swamp the bootstrap peer."""


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


@dataclass
class SwarmFigures:
    """One swarm's figures, for the table side by side."""

    nodes: int
    book: bool
    start_s: float = 0.0
    load: str = ""
    one: str = ""
    together: str = ""
    gossip: str = ""
    logs: dict[str, str] = field(default_factory=dict)
    """Log figures while the swarm ran, by kind of line."""
    stop_logs: dict[str, str] = field(default_factory=dict)
    """Log figures once all nodes were told to stop."""

    @property
    def title(self) -> str:
        return f"{self.nodes} nodes, {'offer book' if self.book else 'DHT only'}"


async def bench_swarm(
    nodes: int, book: bool, args: argparse.Namespace, logdir: Path
) -> SwarmFigures:
    figures = SwarmFigures(nodes, book)
    name = f"{nodes}-{'book' if book else 'dht'}"
    tag = f"bench-{os.getpid()}-{name}"  # fresh peer IDs for each swarm of a run
    label = f"[{figures.title}]"
    async with AsyncExitStack() as stack:
        start = time.perf_counter()
        logs = _log_files(stack, logdir, [f"{name}-boot"] + [f"{name}-{i}" for i in range(nodes)])
        limit = args.max_per_ip or None
        boot = await stack.enter_async_context(
            ProbeProcess.spawn(f"{tag}-boot", stderr=logs[0], max_per_ip=limit, offer_book=book)
        )
        probes: list[ProbeProcess | None] = [None] * nodes
        # a few at a time: 100 processes joining at once on 2 cores starve the bootstrap
        # peer, and each node's swarm then refuses to dial it for a while (its dial backoff)
        starting = trio.CapacityLimiter(SPAWN_AT_ONCE)

        async def spawn(i: int) -> None:
            async with starting:
                probes[i] = await stack.enter_async_context(
                    ProbeProcess.spawn(
                        f"{tag}-{i}",
                        bootstrap=(boot.multiaddr,),
                        start_timeout=300,
                        stderr=logs[i + 1],
                        max_per_ip=limit,
                        offer_book=book,
                    )
                )

        async with trio.open_nursery() as nursery:
            for i in range(nodes):
                nursery.start_soon(spawn, i)
        peers = [p for p in probes if p is not None]
        figures.start_s = time.perf_counter() - start
        line(
            f"{label} start", f"{figures.start_s:.1f} s for all processes, {SPAWN_AT_ONCE} at once"
        )
        try:
            await _measure(peers, args, figures, label)
        finally:
            stop_at = time.time()
            async with trio.open_nursery() as nursery:  # all at once, not one after another
                for p in peers:
                    nursery.start_soon(p.stop)
    running, stopping = _count_logs(logdir, name, stop_at)
    figures.logs = running.figures()
    figures.stop_logs = stopping.figures()
    for phase, counts, top in (("running", running, 5), ("all stopping", stopping, 3)):
        for name, value in counts.figures().items():
            line(f"{label} log, {phase}: {name}", value)
        for kind, count in counts.kinds.most_common(top):
            line(f"{label}   {count:>5} x", kind)
    return figures


def _log_files(stack: AsyncExitStack, logdir: Path, names: Sequence[str]) -> list[IO[bytes]]:
    return [stack.enter_context((logdir / f"{name}.log").open("wb")) for name in names]


async def _measure(
    peers: Sequence[ProbeProcess], args: argparse.Namespace, figures: SwarmFigures, label: str
) -> None:
    nodes = figures.nodes
    async with trio.open_nursery() as nursery:
        for p in peers:
            nursery.start_soon(partial(p.command, "advertise", model=MODEL, wait=300))
    await trio.sleep(args.settle)  # gossip of the offers, if the network uses it

    async def find(p: ProbeProcess, found: list[int], times: list[float]) -> None:
        answer = await p.command(
            "find", model=MODEL, limit=nodes, timeout=args.find_timeout, wait=args.find_timeout + 60
        )
        found.append(len(answer.get("peers", [])))
        times.append(answer.get("ms", float("nan")))

    # one at a time from the first nodes, then at once from the last ones (distinct
    # nodes at 100: a node that searched before may remember what it found)
    found: list[int] = []
    times: list[float] = []
    for p in peers[: args.concurrent]:
        await find(p, found, times)
    figures.one = _search_figure(times, found, nodes)
    line(f"{label} find_offers, one at a time ({len(times)})", figures.one)
    found, times = [], []
    async with trio.open_nursery() as nursery:
        for p in peers[-args.concurrent :]:
            nursery.start_soon(find, p, found, times)
    figures.together = _search_figure(times, found, nodes)
    line(f"{label} find_offers, {len(times)} at once", figures.together)
    count = args.gossip
    sent = (await peers[0].command("publish", n=count, rate=5.0, wait=300))["sent"]
    await trio.sleep(3)  # let the last messages arrive before asking
    heard = [(await p.command("heard"))["heard"] for p in peers[1:]]
    delays = [(h[k] - t) * 1000 for h in heard for k, t in sent.items() if k in h]
    fraction = len(delays) / (len(sent) * len(heard))
    figures.gossip = (
        f"delivered {fraction:.1%}  p50 {pct(delays, 50):.0f} ms  p95 {pct(delays, 95):.0f} ms"
    )
    line(f"{label} gossip, {count} msgs at 5/s", figures.gossip)
    figures.load = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def _search_figure(times: Sequence[float], found: Sequence[int], nodes: int) -> str:
    return (
        f"p50 {pct(times, 50):.0f} ms  p95 {pct(times, 95):.0f} ms  "
        f"found {statistics.mean(found):.1f}/{nodes} (min {min(found)})"
    )


_RECORD = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+): (.*)$"
)
_VARIABLE = (  # parts of a message that differ between records of one kind
    (re.compile(r"/(ip4|ip6|dns4?)/\S+"), "<addr>"),
    (re.compile(r"\b(Qm|12D3Koo|16Uiu2)[1-9A-HJ-NP-Za-km-z]{20,}"), "<peer>"),
    (re.compile(r"\b\d+\.\d+\.\d+\.\d+(:\d+)?"), "<ip>"),
    (re.compile(r"\b[0-9a-f]{16,}\b"), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
)


@dataclass(eq=False)  # (hashable: a key by identity)
class LogCounts:
    """What the nodes of one swarm wrote in one phase."""

    per_node: dict[str, list[int]] = field(
        default_factory=lambda: {"WARNING+": [], "ERROR+": [], "traceback": [], "other": []}
    )
    bootstrap: dict[str, int] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)

    def figures(self) -> dict[str, str]:
        where = {"WARNING+": "records at WARNING and up", "ERROR+": "of them ERROR and up"}
        return {
            where.get(name, f"{name} lines"): f"{sum(values)} in all, max {max(values, default=0)}"
            f" per node (bootstrap {self.bootstrap.get(name, 0)})"
            for name, values in self.per_node.items()
        }


def _count_logs(logdir: Path, name: str, stop_at: float) -> tuple[LogCounts, LogCounts]:
    """Per node, what it wrote at default verbosity while the swarm ran and once all its
    nodes were told to stop (before and after ``stop_at``, unix time): records at WARNING
    and up, at ERROR and up, lines of tracebacks, and lines that are not log records at
    all; with each kind of record (level, logger, message with its addresses, peer IDs
    and numbers blanked) and how often it came. Lines that follow a record are its
    traceback; "other" lines come before the first record."""
    running, stopping = LogCounts(), LogCounts()
    for path in sorted(logdir.glob(f"{name}-*.log")):
        counts = {phase: dict.fromkeys(phase.per_node, 0) for phase in (running, stopping)}
        phase, in_traceback = running, False
        for text in path.read_text(errors="replace").splitlines():
            record = _RECORD.match(text)
            if record:
                in_traceback = True
                when, level, name, message = record.groups()
                stamp = time.mktime(time.strptime(when[:19], "%Y-%m-%d %H:%M:%S"))
                phase = running if stamp + int(when[20:]) / 1000 < stop_at else stopping
                if level in ("DEBUG", "INFO"):
                    continue
                counts[phase]["WARNING+"] += 1
                counts[phase]["ERROR+"] += level != "WARNING"
                for pattern, blank in _VARIABLE:
                    message = pattern.sub(blank, message)
                phase.kinds[f"{level} {name}: {message[:100]}"] += 1
            elif in_traceback:  # the lines after a record: its traceback
                counts[phase]["traceback"] += 1
            elif text.strip():
                counts[phase]["other"] += 1
                phase.kinds[f"(not a log record) {text[:100]}"] += 1
        for phase, numbers in counts.items():
            for name, count in numbers.items():
                phase.per_node[name].append(count)
            if path.name.endswith("-boot.log"):
                phase.bootstrap = numbers
    return running, stopping


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


EARLIER = {
    30: ("p50 348 ms, found 22.5/30", "p50 8.4 s, found 24.9/30"),
    100: ("p50 538 ms, found 20.0/100", "p50 12.1 s, found 20.0/100"),
}
"""Figures of earlier sessions (issue 13; the DHT-only ``find_offers``), NOT from this run:
30 nodes by the second session, 100 nodes by the third (branch ``scale``, main's code)."""


def summary(swarms: Sequence[SwarmFigures]) -> None:
    print("\nside by side (this run)", flush=True)
    rows: list[tuple[str, list[str]]] = [
        ("processes started (s)", [f"{f.start_s:.1f}" for f in swarms]),
        ("find_offers one at a time", [f.one for f in swarms]),
        ("  earlier, NOT this run", [EARLIER.get(f.nodes, ("-", "-"))[0] for f in swarms]),
        ("find_offers at once", [f.together for f in swarms]),
        ("  earlier, NOT this run", [EARLIER.get(f.nodes, ("-", "-"))[1] for f in swarms]),
        ("gossip", [f.gossip for f in swarms]),
    ]
    for name in swarms[0].logs:
        rows.append((f"log: {name}", [f.logs.get(name, "-") for f in swarms]))
    for name in swarms[0].stop_logs:
        rows.append((f"log at stop: {name}", [f.stop_logs.get(name, "-") for f in swarms]))
    rows.append(("load average at the end", [f.load for f in swarms]))
    width = max(len(text) for _, values in rows for text in values) + 2
    first = max(len(name) for name, _ in rows) + 2
    print(f"{'':<{first}}" + "".join(f"{f.title:<{width}}" for f in swarms))
    for name, values in rows:
        print(f"{name:<{first}}" + "".join(f"{v:<{width}}" for v in values), flush=True)


async def main(args: argparse.Namespace) -> None:
    print(f"bench_net on {os.cpu_count()} cores, loopback only\n", flush=True)
    if not args.swarm_only:
        await bench_connect(args.connect_rounds)
        await bench_echo(args.echo)
    swarms = []
    with tempfile.TemporaryDirectory() as tmp:
        logdir = args.keep_logs or Path(tmp)
        for nodes in args.nodes:
            for book in args.book:
                swarms.append(await bench_swarm(nodes, book == "on", args, logdir))
    if swarms:
        summary(swarms)
    if not args.swarm_only:
        await bench_bulk(args.bulk_mb)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="*", default=[30, 100])
    parser.add_argument(
        "--book",
        nargs="+",
        choices=("on", "off"),
        default=["on"],
        help="each size once per value: offer books on (find_offers asks peers for "
        "theirs), or off (the DHT alone, as before issue 13)",
    )
    parser.add_argument("--concurrent", type=int, default=30, help="searches at once")
    parser.add_argument("--find-timeout", type=float, default=30.0, help="of each search, s")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="wait after advertising, before searching, s"
    )
    parser.add_argument("--echo", type=int, default=1000)
    parser.add_argument("--gossip", type=int, default=50)
    parser.add_argument("--connect-rounds", type=int, default=20)
    parser.add_argument("--bulk-mb", type=int, default=200)
    parser.add_argument(
        "--max-per-ip",
        type=int,
        default=ConnectionLimits.max_inbound,
        help="inbound connections a node takes from one IP (all share 127.0.0.1 here; "
        f"0: the default {ConnectionLimits.max_per_ip})",
    )
    parser.add_argument("--swarm-only", action="store_true", help="only the swarm figures")
    parser.add_argument("--keep-logs", type=Path, help="directory to keep the nodes' logs in")
    arguments = parser.parse_args()
    if arguments.keep_logs:
        arguments.keep_logs.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.ERROR)
    trio.run(main, arguments)
