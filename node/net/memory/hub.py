"""The in-memory network: every peer of a test or simulation, the links and the faults.

Deterministic: all randomness comes from the injected ``random.Random``, and time from
trio's clock (run it under ``trio.testing.MockClock(autojump_threshold=0)`` to simulate a
day in seconds). Faults, all changeable at run time:

* ``latency_s`` (+ uniform ``jitter_s``): one-way delay of every stream write, dial,
  gossip delivery and DHT round trip;
* ``loss``: probability that one dial, one gossip delivery or one DHT RPC to one peer is
  lost (streams themselves are reliable, like TCP: a lost dial fails it);
* :meth:`MemoryHub.partition`/:meth:`MemoryHub.heal`: groups that cannot reach each other
  (streams across the cut are reset);
* :meth:`MemoryHub.crash`: a peer disappears with its DHT records, its streams are reset
  and the body of its ``open_memory_network`` block is cancelled.

The DHT is modelled, not simulated message by message: a record is stored at the
``replication`` live peers (reachable from the writer) closest to the key by XOR distance
of sha256 hashes, and a lookup asks the closest peers reachable from the reader. Each
store and read costs one round trip. That keeps 200 peers over a day of virtual time
cheap while crashes and partitions still lose records as they would.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

import trio
from dgpu.node.net.memory.streams import MemoryConnection
from dgpu.node.net.records import OFFER_PREFIX, newest_per_provider
from dgpu.protocol.errors import ProtocolError
from dgpu.protocol.identity import peer_id_of
from dgpu.protocol.messages import Offer
from dgpu.protocol.offers import MAX_OFFER_BYTES, parse_offer

if TYPE_CHECKING:
    from dgpu.node.net.memory.network import MemoryNetwork

DEFAULT_EPOCH: Final = 1_700_000_000
_VERIFY_CACHE: Final = 32_768


@dataclass(frozen=True)
class Faults:
    latency_s: float = 0.005
    jitter_s: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_s < 0 or self.jitter_s < 0 or not 0 <= self.loss <= 1:
            raise ValueError(f"bad faults {self}")


@dataclass(frozen=True)
class MemoryHubConfig:
    faults: Faults = field(default_factory=Faults)
    replication: int = 8
    provider_ttl_s: float = 48 * 3600.0
    max_providers_per_key: int | None = None
    """Provider records one DHT node keeps per key, as py-libp2p does (20: the first ones
    stay until they expire, later providers are ignored; LIBP2P.md hazard 14). None keeps
    every one (the simulations' market)."""
    epoch: int = DEFAULT_EPOCH
    """Unix time at the hub's start: ``now()`` is ``epoch + elapsed trio time``."""


@dataclass
class HubStats:
    dials: int = 0
    dials_failed: int = 0
    gossip_sent: int = 0
    gossip_delivered: int = 0
    gossip_lost: int = 0
    dht_rpcs: int = 0
    dht_rpcs_lost: int = 0


def _hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


class MemoryHub:
    """All peers of one in-memory network; open it with :func:`open_memory_hub`."""

    def __init__(self, config: MemoryHubConfig, rng: random.Random, nursery: trio.Nursery):
        self.config = config
        self.faults = config.faults
        self.rng = rng
        self.stats = HubStats()
        self._nursery = nursery
        self._t0 = trio.current_time()
        self._live: dict[str, MemoryNetwork] = {}
        self._group: dict[str, int] = {}
        self._conns: dict[str, set[MemoryConnection]] = {}
        self._peer_hash: dict[str, int] = {}
        self._order: dict[str, list[str]] = {}
        self._values: dict[str, dict[str, bytes]] = {}
        self._providers: dict[str, dict[str, dict[str, float]]] = {}
        self._peer_ids: dict[bytes, str] = {}
        self._verified: dict[tuple[bytes, int], Offer | None] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._timer_added = trio.Event()

    # -- time and randomness ----------------------------------------------------------
    def now(self) -> int:
        return self.config.epoch + int(trio.current_time() - self._t0)

    def delay(self, a: str, b: str) -> float:
        faults = self.faults
        if faults.jitter_s:
            return faults.latency_s + self.rng.uniform(0.0, faults.jitter_s)
        return faults.latency_s

    def lost(self) -> bool:
        return self.faults.loss > 0 and self.rng.random() < self.faults.loss

    def set_faults(self, **changes: float) -> None:
        """Change latency/jitter/loss from now on, e.g. ``hub.set_faults(loss=0.2)``."""
        self.faults = replace(self.faults, **changes)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run a plain callback after ``delay`` seconds (used for gossip deliveries)."""
        heapq.heappush(self._timers, (trio.current_time() + delay, next(self._timer_seq), callback))
        self._timer_added.set()

    async def _run_timers(self) -> None:
        while True:
            if not self._timers:
                self._timer_added = trio.Event()
                await self._timer_added.wait()
                continue
            when = self._timers[0][0]
            if trio.current_time() < when:
                self._timer_added = trio.Event()
                with trio.move_on_at(when):
                    await self._timer_added.wait()
                continue
            while self._timers and self._timers[0][0] <= when:
                _, _, callback = heapq.heappop(self._timers)
                callback()
            await trio.lowlevel.checkpoint()

    # -- membership and faults ----------------------------------------------------------
    @property
    def peers(self) -> list[str]:
        return list(self._live)

    def network(self, peer_id: str) -> MemoryNetwork | None:
        return self._live.get(peer_id)

    def join(self, net: MemoryNetwork) -> None:
        if net.peer_id in self._live:
            raise ValueError(f"peer {net.peer_id} is already on the hub")
        self._live[net.peer_id] = net
        self._order.clear()

    def leave(self, peer_id: str) -> None:
        """A peer goes away (normal stop or crash): its streams and DHT records go too."""
        if self._live.pop(peer_id, None) is None:
            return
        self._order.clear()
        self._values.pop(peer_id, None)
        self._providers.pop(peer_id, None)
        for conn in list(self._conns.pop(peer_id, ())):
            conn.break_()

    def crash(self, peer_id: str) -> None:
        """Kill a peer now: the body of its ``open_memory_network`` block is cancelled."""
        net = self._live.get(peer_id)
        if net is not None:
            net.crash()

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: each group reaches only itself; peers not named form one
        more group. Streams across the cut are reset."""
        self._group = {peer: index + 1 for index, group in enumerate(groups) for peer in group}
        for conns in self._conns.values():
            for conn in list(conns):
                if not self.reachable(conn.dialer, conn.listener):
                    conn.break_()

    def heal(self) -> None:
        self._group = {}

    def reachable(self, a: str, b: str) -> bool:
        return self._group.get(a, 0) == self._group.get(b, 0)

    # -- streams ---------------------------------------------------------------------
    def connect(self, dialer: str, listener: str) -> MemoryConnection:
        conn = MemoryConnection(dialer, listener, self.delay, self._forget)
        self._conns.setdefault(dialer, set()).add(conn)
        self._conns.setdefault(listener, set()).add(conn)
        return conn

    def _forget(self, conn: MemoryConnection) -> None:
        for peer in (conn.dialer, conn.listener):
            conns = self._conns.get(peer)
            if conns is not None:
                conns.discard(conn)

    def open_streams(self, peer_id: str) -> int:
        return len(self._conns.get(peer_id, ()))

    # -- offers: validation cache, gossip ----------------------------------------------
    def parse_offer_cached(self, data: bytes, now: int) -> Offer | None:
        """``parse_offer`` memoised on (bytes, second): every receiver of one gossip
        message validates it at the same virtual second, so one check serves them all."""
        key = (data, now)
        if key in self._verified:
            return self._verified[key]
        try:
            offer: Offer | None = parse_offer(data, now=now)
        except ProtocolError:
            offer = None
        if len(self._verified) >= _VERIFY_CACHE:
            del self._verified[next(iter(self._verified))]
        self._verified[key] = offer
        return offer

    def offer_record(self, key: str, value: bytes, now: int) -> Offer | None:
        """The offer of a DHT value under ``key`` if it is valid now (same rules as
        :func:`~dgpu.node.net.records.check_offer_record`, signature checks memoised)."""
        if not key.startswith(OFFER_PREFIX) or len(value) > MAX_OFFER_BYTES:
            return None
        offer = self.parse_offer_cached(value, now)
        if offer is None or key[len(OFFER_PREFIX) :] != self._peer_id_of(offer.provider):
            return None
        return offer

    def _peer_id_of(self, public_key: bytes) -> str:
        peer_id = self._peer_ids.get(public_key)
        if peer_id is None:
            peer_id = self._peer_ids[public_key] = peer_id_of(public_key)
        return peer_id

    def gossip(self, sender: str, data: bytes) -> None:
        for peer, net in self._live.items():
            if peer == sender or not net.wants_gossip or not self.reachable(sender, peer):
                continue
            self.stats.gossip_sent += 1
            if self.lost():
                self.stats.gossip_lost += 1
                continue
            self.call_later(self.delay(sender, peer), _Delivery(self, peer, data))

    # -- DHT model -------------------------------------------------------------------
    def _closest(self, key: str, reader: str, count: int) -> list[str]:
        order = self._order.get(key)
        if order is None:
            target = _hash_int(key)
            for peer in self._live:
                if peer not in self._peer_hash:
                    self._peer_hash[peer] = _hash_int(peer)
            order = sorted(self._live, key=lambda p: self._peer_hash[p] ^ target)
            self._order[key] = order
        if not self._group:
            return order[:count]
        chosen = []
        for peer in order:
            if self.reachable(reader, peer):
                chosen.append(peer)
                if len(chosen) == count:
                    break
        return chosen

    def _rpc_ok(self) -> bool:
        self.stats.dht_rpcs += 1
        if self.lost():
            self.stats.dht_rpcs_lost += 1
            return False
        return True

    def store_provider(self, writer: str, key: str) -> int:
        expiry = trio.current_time() + self.config.provider_ttl_s
        stored = 0
        cap = self.config.max_providers_per_key
        now = trio.current_time()
        for peer in self._closest(key, writer, self.config.replication):
            if self._rpc_ok():
                records = self._providers.setdefault(peer, {}).setdefault(key, {})
                if cap is not None and writer not in records:
                    for gone in [p for p, until in records.items() if until <= now]:
                        del records[gone]
                    if len(records) >= cap:
                        continue
                records[writer] = expiry
                stored += 1
        return stored

    def store_value(self, writer: str, key: str, value: bytes) -> int:
        now = self.now()
        stored = 0
        for peer in self._closest(key, writer, self.config.replication):
            if not self._rpc_ok():
                continue
            offer = self.offer_record(key, value, now)
            if offer is None:  # the receiving server validates, like the libp2p validator
                continue
            values = self._values.setdefault(peer, {})
            old = values.get(key)
            old_offer = self.offer_record(key, old, now) if old is not None else None
            if old_offer is None or newest_per_provider([old_offer, offer])[0] is offer:
                values[key] = value
            stored += 1
        return stored

    def find_providers(self, reader: str, key: str, limit: int) -> list[str]:
        now = trio.current_time()
        found: dict[str, None] = {}
        for peer in self._closest(key, reader, self.config.replication):
            if not self._rpc_ok():
                continue
            for provider, expiry in self._providers.get(peer, {}).get(key, {}).items():
                if expiry > now:
                    found[provider] = None
        return list(found)[:limit]

    def get_values(self, reader: str, key: str) -> list[bytes]:
        """The distinct values the reachable replicas of ``key`` hold."""
        values: list[bytes] = []
        for peer in self._closest(key, reader, self.config.replication):
            if self._rpc_ok():
                value = self._values.get(peer, {}).get(key)
                if value is not None and value not in values:
                    values.append(value)
        return values


@dataclass(frozen=True)
class _Delivery:
    hub: MemoryHub
    peer: str
    data: bytes

    def __call__(self) -> None:
        net = self.hub.network(self.peer)
        if net is None:
            return
        offer = self.hub.parse_offer_cached(self.data, net.now())
        if offer is not None:
            self.hub.stats.gossip_delivered += 1
            net.deliver_gossip(offer)


def seed_trio_scheduler(seed: int) -> None:
    """Make trio's own scheduling choices repeatable (call before ``trio.run``).

    Trio runs the tasks woken in one tick in a randomly chosen order, from a generator of
    its own. Under ``MockClock`` that is the only randomness left outside the hub's
    ``rng``; seeding it makes a whole simulation repeat bit for bit. It uses the hook trio
    keeps for Hypothesis (a private attribute: checked at call time).
    """
    from trio._core import _run

    scheduler_random = getattr(_run, "_r", None)
    if not isinstance(scheduler_random, random.Random):
        raise RuntimeError("this trio version has no seedable scheduler")
    scheduler_random.seed(seed)


@asynccontextmanager
async def open_memory_hub(
    config: MemoryHubConfig | None = None, *, rng: random.Random | None = None
) -> AsyncIterator[MemoryHub]:
    """``async with open_memory_hub(cfg, rng=random.Random(1)) as hub:`` (owns the timer
    task that delivers gossip)."""
    async with trio.open_nursery() as nursery:
        hub = MemoryHub(config or MemoryHubConfig(), rng or random.Random(0), nursery)
        nursery.start_soon(hub._run_timers)
        try:
            yield hub
        finally:
            nursery.cancel_scope.cancel()
