"""A scriptable libp2p peer in a child process, for integration tests and benchmarks.

Child side (``python -m dgpu.node.net.libp2p.probe --label L [--bootstrap ADDR] [--psk HEX]``):
prints one JSON line ``{"peer_id", "multiaddr", "routing_table"}`` when ready, then answers
one JSON command per stdin line with one JSON line:

==============================================  ==============================================
``{"op": "advertise", "model": M, "ttl": S}``   ``{"ok": true, "ms": ...}``
``{"op": "find", "model": M, "limit": N}``      ``{"peers": [...], "ms": ...}``
``{"op": "echo", "peer": P, "addrs": [..],      ``{"connect_ms": ..., "rtt_ms": [...]}``:
"n": N}``                                       N request/responses on one open stream
``{"op": "publish", "n": N, "rate": R}``        gossip N fresh offers at R/s; ``{"sent":
                                                {offer id hex: unix time}}``
``{"op": "providers", "model": M}``             ``{"providers": [...], "ms": ...}``
``{"op": "heard"}``                             ``{"heard": {offer id hex: unix time}}``
``{"op": "status"}``                            ``{"routing_table": n}``
``{"op": "quit"}``                              exits
==============================================  ==============================================

A command that fails with a dgpu error answers ``{"error": "..."}``.

The child logs to stderr as ``dgpu`` does at default verbosity (WARNING and up, py-libp2p's
records through :mod:`~dgpu.node.net.libp2p.quiet`; ``-v`` INFO, ``-vv`` DEBUG), so what a
swarm of probes writes there is what a swarm of nodes would show an operator.

Parent side: :class:`ProbeProcess` (``async with ProbeProcess.spawn(...) as probe``).
"""

# ruff: noqa: ASYNC109  (explicit per-call timeouts)

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

import trio
from dgpu.node.net.errors import StreamClosed
from dgpu.node.net.interface import MessageStream
from dgpu.node.net.libp2p.config import ConnectionLimits, Libp2pConfig
from dgpu.node.net.libp2p.dht import find_providers_fresh
from dgpu.node.net.libp2p.network import Libp2pNetwork, open_libp2p_network
from dgpu.node.net.offer_book import OfferBookConfig
from dgpu.node.net.records import provider_key
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import JobStatus, Offer
from dgpu.protocol.offers import OfferTerms, make_offer, offer_bytes

ECHO_PROTOCOL = "/dgpu/probe-echo/1"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The child's log lines, as ``dgpu``'s own (cli/main.py)."""
_JOB = bytes(16)


def probe_terms(model: str) -> OfferTerms:
    return OfferTerms(
        gpu_model=model,
        gpu_count=1,
        vram_mb=24_576,
        price_per_gpu_second=1_000,
        mint=bytes(32),
        region="local",
        max_duration_s=3600,
        simulated=True,
    )


async def _echo(stream: MessageStream, peer: str) -> None:
    while True:
        try:
            message = await stream.receive()
        except StreamClosed:
            return
        await stream.send(message)


class _Probe:
    def __init__(self, net: Libp2pNetwork, identity: Identity) -> None:
        self.net = net
        self.identity = identity
        self.heard: dict[str, float] = {}

    def offer(self, model: str, ttl: int) -> Offer:
        return make_offer(
            self.identity,
            probe_terms(model),
            multiaddrs=self.net.listen_addrs,
            now=self.net.now(),
            ttl_s=ttl,
        )

    async def listen(self) -> None:
        async with self.net.subscribe_offers() as offers:
            async for offer in offers:
                self.heard.setdefault(offer.offer_id.hex(), time.time())

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        start = time.perf_counter()
        if op == "advertise":
            await self.net.advertise(self.offer(command["model"], int(command.get("ttl", 300))))
            return {"ok": True, "ms": (time.perf_counter() - start) * 1000}
        if op == "find":
            found = await self.net.find_offers(
                command["model"],
                limit=int(command.get("limit", 20)),
                timeout=float(command.get("timeout", 20)),
            )
            peers = [
                self.net.peer_id if o.provider == self.identity.public_key else _peer(o)
                for o in found
            ]
            return {"peers": peers, "ms": (time.perf_counter() - start) * 1000}
        if op == "echo":
            return await self._echo(command)
        if op == "publish":
            return await self._publish(int(command["n"]), float(command["rate"]))
        if op == "providers":
            infos = await find_providers_fresh(
                self.net._dht, provider_key(command["model"]), int(command.get("limit", 20))
            )
            return {
                "providers": [i.peer_id.to_base58() for i in infos],
                "ms": (time.perf_counter() - start) * 1000,
            }
        if op == "heard":
            return {"heard": self.heard}
        if op == "status":
            return {"routing_table": self.net.routing_table_size}
        raise ValueError(f"unknown op {op!r}")

    async def _echo(self, command: dict[str, Any]) -> dict[str, Any]:
        from dgpu.node.net.interface import PeerRef

        start = time.perf_counter()
        await self.net.connect(PeerRef(command["peer"], tuple(command.get("addrs", ()))))
        connect_ms = (time.perf_counter() - start) * 1000
        rtts = []
        async with self.net.open_stream(command["peer"], ECHO_PROTOCOL) as stream:
            for i in range(int(command["n"])):
                t = time.perf_counter()
                await stream.send(JobStatus(job_id=_JOB, state="running", detail=str(i)))
                await stream.receive(timeout=10)
                rtts.append((time.perf_counter() - t) * 1000)
        return {"connect_ms": connect_ms, "rtt_ms": rtts}

    async def _publish(self, count: int, rate: float) -> dict[str, Any]:
        sent: dict[str, float] = {}
        services = self.net._services
        for _ in range(count):
            offer = self.offer("GOSSIP", 300)
            sent[offer.offer_id.hex()] = time.time()
            await services.publish_offer(offer_bytes(offer))
            await trio.sleep(1 / rate)
        return {"sent": sent}


def _peer(offer: Offer) -> str:
    from dgpu.protocol.identity import peer_id_of

    return peer_id_of(offer.provider)


async def _child(args: argparse.Namespace) -> None:
    identity = Identity.from_label(args.label) if args.label else Identity.generate()
    config = Libp2pConfig(
        bootstrap=tuple(args.bootstrap),
        psk=bytes.fromhex(args.psk) if args.psk else None,
        dial_timeout_s=args.dial_timeout,
        connections=ConnectionLimits(max_per_ip=args.max_per_ip),
        offer_book=OfferBookConfig(enabled=not args.no_offer_book),
        quiet_libp2p_logs=not args.loud,
    )
    async with open_libp2p_network(identity, config) as net, trio.open_nursery() as nursery:
        net.serve(ECHO_PROTOCOL, _echo)
        probe = _Probe(net, identity)
        nursery.start_soon(probe.listen)
        _say(
            {
                "peer_id": net.peer_id,
                "multiaddr": net.listen_addrs[0],
                "routing_table": net.routing_table_size,
            }
        )
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            if command["op"] == "quit":
                break
            try:
                _say(await probe.run(command))
            except DgpuError as exc:  # reported to the parent, the probe keeps running
                _say({"error": f"{type(exc).__name__}: {exc}"})
        nursery.cancel_scope.cancel()


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class ProbeProcess:
    """Parent side: one probe child, driven by JSON commands."""

    def __init__(self, process: trio.Process, ready: dict[str, Any]) -> None:
        self.process = process
        self.ready = ready
        self._buffer = bytearray()

    @property
    def peer_id(self) -> str:
        return str(self.ready["peer_id"])

    @property
    def multiaddr(self) -> str:
        return str(self.ready["multiaddr"])

    @classmethod
    @asynccontextmanager
    async def spawn(
        cls,
        label: str,
        *,
        bootstrap: tuple[str, ...] = (),
        psk: bytes | None = None,
        dial_timeout: float = 10.0,
        start_timeout: float = 60.0,
        stderr: IO[bytes] | None = None,
        max_per_ip: int | None = None,
        offer_book: bool = True,
        quiet: bool = True,
    ) -> AsyncIterator[ProbeProcess]:
        """``stderr``: where the child's log goes (the parent's stderr by default);
        ``max_per_ip``: its inbound connections from one IP (``ConnectionLimits``; many
        processes on 127.0.0.1 share one); ``offer_book``: off, ``find`` searches the DHT
        alone; ``quiet``: off, py-libp2p's records are not routed through
        :mod:`~dgpu.node.net.libp2p.quiet` (its own defaults)."""
        argv = [sys.executable, "-m", "dgpu.node.net.libp2p.probe", "--label", label]
        for addr in bootstrap:
            argv += ["--bootstrap", addr]
        if psk is not None:
            argv += ["--psk", psk.hex()]
        argv += ["--dial-timeout", str(dial_timeout)]
        if max_per_ip is not None:
            argv += ["--max-per-ip", str(max_per_ip)]
        if not offer_book:
            argv.append("--no-offer-book")
        if not quiet:
            argv.append("--loud")
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        probe = cls(process, {})
        try:
            probe.ready = await probe._read_line(start_timeout)
            yield probe
        finally:
            with trio.CancelScope(shield=True):
                await probe.stop()

    async def command(self, op: str, *, wait: float = 90.0, **fields: Any) -> dict[str, Any]:
        """Send ``{"op": op, **fields}``; wait at most ``wait`` seconds for the answer."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps({"op": op, **fields}).encode() + b"\n")
        return await self._read_line(wait)

    async def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                data = await self.process.stdout.receive_some(65536)
                if not data:
                    raise RuntimeError(f"probe exited (code {self.process.poll()})")
                self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        """Ask the child to quit (killed after 10 s); idempotent."""
        if self.process.poll() is None and self.process.stdin is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.process.stdin.send_all(b'{"op": "quit"}\n')
        with trio.move_on_after(10):
            await self.process.wait()
        if self.process.poll() is None:
            self.process.kill()
            await self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="")
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--psk", default="")
    parser.add_argument("--dial-timeout", type=float, default=10.0)
    parser.add_argument("--max-per-ip", type=int, default=ConnectionLimits.max_per_ip)
    parser.add_argument("--no-offer-book", action="store_true")
    parser.add_argument("--loud", action="store_true", help="py-libp2p's logs as it sets them")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args()
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format=LOG_FORMAT)
    trio.run(_child, args)


if __name__ == "__main__":
    main()
