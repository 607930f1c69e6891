"""A running provider process under attack: the parts the real-process hostile tests and
``benchmarks/bench_hostile.py`` share.

* :func:`provider_world` — ``dgpu chain serve`` with the escrow, a funded renter key and
  ``dgpu provider start --executor local`` on loopback, as child processes;
* :func:`honest_job` — ``dgpu run --p2p`` of a one-second job against it, timed;
* :func:`proc_stats` — CPU seconds, RSS and open descriptors of a process, from /proc;
* one coroutine per attack of issue 12 (bad frames on ``/meshsub``, connection flood,
  stream flood, request flood, squatting, fake offers), each bounded by its arguments
  and by a ``stop`` event.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr
import trio
import trio.lowlevel
from dgpu.node.net import NEGOTIATE_PROTOCOL, MessageStream
from dgpu.node.net.errors import NetError
from dgpu.node.net.interface import OFFER_PROTOCOL
from dgpu.node.net.libp2p import Libp2pConfig, open_libp2p_network
from dgpu.node.net.libp2p.host import LIBP2P_IO_ERRORS, build_host
from dgpu.node.net.libp2p.network import Libp2pNetwork
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import save_identity
from dgpu.protocol.messages import Agreement, Offer, Quote
from dgpu.protocol.negotiation import JobSpec, RenterNegotiation, new_job_id
from dgpu.protocol.offers import OfferTerms, make_offer
from libp2p.peer.peerinfo import info_from_p2p_addr

from tests.contracts_client.support import Node, serve_node
from tests.fixtures_docker import TEST_IMAGE
from tests.node.clikit import (
    ROOT,
    LocalChain,
    dgpu,
    local_chain,
    provider_args,
    provider_process,
    ready_line,
)

RENTER_TOKENS = 10**13
JOB_SCRIPT = "sleep 1"


@dataclass(frozen=True)
class ProcStats:
    cpu_s: float
    rss_mb: float
    fds: int


def proc_stats(pid: int) -> ProcStats:
    """CPU (user + system) seconds, resident memory and open descriptors of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return ProcStats(cpu, rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")))


@dataclass
class World:
    chain: LocalChain
    node: Node
    provider: subprocess.Popen[str]
    ready: dict[str, Any]
    renter_key: Path
    tmp: Path

    @property
    def multiaddr(self) -> str:
        return str(self.ready["multiaddrs"][0])

    @property
    def peer_id(self) -> str:
        return self.multiaddr.rsplit("/p2p/", 1)[1]

    @property
    def mint(self) -> bytes:
        return bytes(self.node.mint)

    def alive(self) -> bool:
        return self.provider.poll() is None

    def stats(self) -> ProcStats:
        return proc_stats(self.provider.pid)


@asynccontextmanager
async def provider_world(tmp: Path, *, gpus: str = "1xRTX 4090") -> AsyncIterator[World]:
    with serve_node(tmp / "chain") as node:
        chain = await local_chain(node)
        provider_id, renter_id = Identity.generate(), Identity.generate()
        await chain.fund(provider_id)
        await chain.fund(renter_id, tokens=RENTER_TOKENS)
        renter_key = tmp / "renter.json"
        save_identity(renter_id, renter_key)
        log_path = tmp / "provider.log"
        args = [*provider_args(chain, provider_id, tmp), "--executor", "local", "--gpus", gpus]
        try:
            with provider_process(args, log_path) as proc:
                ready = await ready_line(proc, log_path)
                yield World(chain, node, proc, ready, renter_key, tmp)
        finally:
            await chain.chain.aclose()


@dataclass(frozen=True)
class JobRun:
    ok: bool
    seconds: float
    detail: str


async def honest_job(world: World, *, label: str = "honest", timeout_s: float = 90.0) -> JobRun:
    """``dgpu run --p2p`` of a one-second job with a fresh data dir: wall time and outcome."""
    start = time.monotonic()
    with trio.move_on_after(timeout_s) as scope:
        run = await trio.run_process(
            dgpu(
                "run",
                *("--key", str(world.renter_key)),
                *("--data-dir", str(world.tmp / f"renter-{label}")),
                *("--rpc", world.node.url, "--mint", str(world.node.mint)),
                *("--bootstrap", world.multiaddr, "--p2p"),
                *("--gpu", "RTX 4090", "--max-price", "8", "--image", TEST_IMAGE),
                *("--duration", "60", "--json"),
                *("--", "sh", "-c", JOB_SCRIPT),
            ),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    seconds = time.monotonic() - start
    if scope.cancelled_caught:
        return JobRun(False, seconds, f"no result within {timeout_s:g}s")
    if run.returncode != 0:
        return JobRun(False, seconds, run.stderr.decode()[-400:].strip())
    state = json.loads(run.stdout)["state"]
    return JobRun(state == "succeeded", seconds, state)


# -- attackers ----------------------------------------------------------------------------


@asynccontextmanager
async def attacker(world: World, identity: Identity | None = None) -> AsyncIterator[Libp2pNetwork]:
    config = Libp2pConfig(bootstrap=(world.multiaddr,), read_timeout_s=2.0)
    async with open_libp2p_network(identity or Identity.generate(), config) as net:
        yield net


async def _quietly(action: Awaitable[object]) -> None:
    try:
        await action
    except (NetError, DgpuError, *LIBP2P_IO_ERRORS):
        pass  # the provider refused or reset us: what an attacker expects


async def bad_frames(world: World, stop: trio.Event, *, per_s: float = 20.0) -> int:
    """Attack 1: a 5-byte non-protobuf frame on /meshsub/1.1.0, again and again, from a
    fresh identity each second (the provider closes a peer after three bad streams)."""
    sent = 0
    while not stop.is_set():
        async with attacker(world) as net:
            with trio.move_on_after(1.0):
                while not stop.is_set():
                    try:
                        stream = await net.open_raw_stream(world.peer_id, "/meshsub/1.1.0")
                        await stream.send_all(b"\x04\xff\xff\xff\xff")
                        sent += 1
                    except (NetError, *LIBP2P_IO_ERRORS):
                        pass
                    await trio.sleep(1 / per_s)
    return sent


async def connection_flood(world: World, stop: trio.Event, *, count: int = 300) -> int:
    """Attack 2: ``count`` connections from fresh identities (full Noise + Yamux
    handshakes), held until ``stop``; returns how many got in."""
    return await flood_connections(world.multiaddr, stop, count=count)


async def flood_connections(target: str, stop: trio.Event, *, count: int = 300) -> int:
    """:func:`connection_flood` against the full multiaddr ``target`` (any host)."""
    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    admitted = 0
    limiter = trio.CapacityLimiter(32)

    async def one() -> None:
        nonlocal admitted
        host = build_host(Identity.generate(), Libp2pConfig())
        try:
            async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                async with limiter:
                    with trio.move_on_after(10):
                        await host.connect(info)
                if info.peer_id in host.get_connected_peers():
                    admitted += 1
                await stop.wait()
                await host.disconnect(info.peer_id)
        except* (*LIBP2P_IO_ERRORS, trio.TooSlowError):
            pass  # refused (the per-IP and total caps): counted as not admitted

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return admitted


async def stream_flood(world: World, stop: trio.Event, *, count: int = 2_000) -> int:
    """Attack 3: ``count`` silent streams on one connection, held until ``stop``."""
    opened = 0
    async with attacker(world) as net, trio.open_nursery() as nursery:

        async def one() -> None:
            nonlocal opened
            try:
                stream = await net.open_raw_stream(world.peer_id, NEGOTIATE_PROTOCOL)
                opened += 1
                await stop.wait()
                await stream.reset()
            except (NetError, *LIBP2P_IO_ERRORS):
                pass

        for _ in range(count):
            nursery.start_soon(one)
            await trio.lowlevel.checkpoint()
    return opened


async def provider_offer(net: Libp2pNetwork, world: World) -> Offer:
    async with net.open_stream(world.peer_id, OFFER_PROTOCOL, timeout=10) as stream:
        return await stream.receive_as(Offer, timeout=10)


def squat_spec() -> JobSpec:
    return JobSpec(
        image=TEST_IMAGE,
        command=("sh", "-c", "true"),
        gpu_model="RTX 4090",
        gpu_count=1,
        max_duration_s=60,
        max_price_per_gpu_second=10**8,
    )


async def request_flood(world: World, stop: trio.Event, *, concurrency: int = 16) -> int:
    """Attack 4: JobRequests from one identity as fast as ``concurrency`` streams go;
    returns how many were sent."""
    sent = 0
    identity = Identity.generate()
    async with attacker(world, identity) as net:
        offer = await provider_offer(net, world)

        async def loop() -> None:
            nonlocal sent
            while not stop.is_set():
                negotiation = RenterNegotiation(identity, offer, squat_spec())
                request = negotiation.make_request(now=net.now(), job_id=new_job_id(os.urandom(32)))

                async def ask(request: Any = request) -> None:
                    async with net.open_stream(world.peer_id, NEGOTIATE_PROTOCOL, timeout=5) as s:
                        await s.send(request)
                        await s.receive(timeout=5)

                await _quietly(ask())
                sent += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(loop)
    return sent


async def squatting(world: World, stop: trio.Event, *, keys: int = 3) -> int:
    """Attack 5: funded keys that take agreements and never fund them, renewing as soon as
    the provider lets them; returns how many agreements were countersigned."""
    identities = [Identity.generate() for _ in range(keys)]
    for identity in identities:
        await world.chain.fund(identity, tokens=RENTER_TOKENS)
    agreed = 0

    async def squat(identity: Identity) -> None:
        nonlocal agreed
        # a request must come from the key it is signed by: one node per squatting key
        async with attacker(world, identity) as net:
            while not stop.is_set():
                offer = await provider_offer(net, world)
                negotiation = RenterNegotiation(identity, offer, squat_spec())
                request = negotiation.make_request(now=net.now(), job_id=new_job_id(os.urandom(32)))
                stream: MessageStream
                async with net.open_stream(world.peer_id, NEGOTIATE_PROTOCOL, timeout=5) as stream:
                    await stream.send(request)
                    quote = await stream.receive(timeout=5)
                    if not isinstance(quote, Quote):
                        await trio.sleep(1.0)  # refused (cooling down, GPUs held): retry
                        continue
                    program_id = bytes(world.chain.client.program_id)
                    agreement = negotiation.on_quote(quote, now=net.now(), program_id=program_id)
                    await stream.send(agreement)
                    if isinstance(await stream.receive(timeout=10), Agreement):
                        agreed += 1
                await trio.sleep(0.5)

    async def guarded(identity: Identity) -> None:
        while not stop.is_set():
            await _quietly(squat(identity))
            await trio.sleep(0.5)

    async with trio.open_nursery() as nursery:
        for identity in identities:
            nursery.start_soon(guarded, identity)
    return agreed


async def fake_offers(
    world: World, stop: trio.Event, *, count: int = 20, ready: trio.Event | None = None
) -> int:
    """Attack 6: ``count`` fresh nodes join the DHT through the provider and advertise
    valid, cheaper offers; they take negotiation streams and never answer."""

    async def silent(stream: MessageStream, peer: str) -> None:
        await stop.wait()

    async with AsyncExitStack() as stack:
        for _ in range(count):
            identity = Identity.generate()
            net = await stack.enter_async_context(attacker(world, identity))
            net.serve(NEGOTIATE_PROTOCOL, silent)
            terms = OfferTerms(
                gpu_model="RTX 4090",
                gpu_count=8,
                vram_mb=81_920,
                price_per_gpu_second=1,
                mint=world.mint,
                region="",
                max_duration_s=86_400,
                simulated=False,
            )
            offer = make_offer(
                identity, terms, multiaddrs=net.listen_addrs, now=net.now(), ttl_s=300
            )
            await _quietly(net.advertise(offer, timeout=10))
        if ready is not None:
            ready.set()
        await stop.wait()
    return count


Attack = Callable[[World, trio.Event], Awaitable[int]]
ATTACKS: dict[str, Attack] = {
    "bad frames on /meshsub": bad_frames,
    "connection flood (300)": connection_flood,
    "stream flood (2000)": stream_flood,
    "request flood": request_flood,
    "squatting (3 funded keys)": squatting,
    "fake offers (20)": fake_offers,
}
