"""Which inbound dgpu stream gets served: per-peer caps and rates, and room kept for
peers with funded jobs (issue 12, attacks 3 and 4). Pure bookkeeping; both networks use it.

Before this, one limit of 256 streams covered every peer: 5,000 silent streams from one
peer filled it and the metering streams of funded jobs were reset with the rest; 461
JobRequests/s from one identity burned a core in signature checks and store look-ups.
Now, before any byte of a stream is read (so before signatures and the store):

* a peer has at most ``max_streams_per_peer`` streams open at once;
* a peer opens at most ``rate_per_s`` streams per second on average (a token bucket of
  ``burst`` tokens): a flood costs the flooder its own streams, not everyone's CPU;
* of ``max_streams`` in all, ``reserved`` are only for *protected* peers — those the
  role marked with :meth:`StreamAdmission.protect` (a provider protects the renter of each
  funded job) — and protected peers are exempt from the per-peer cap and rate: a
  funded job's metering stream is never starved by others.

Memory stays bounded under fresh identities: at most ``max_tracked_peers`` buckets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import trio


@dataclass(frozen=True)
class AdmissionConfig:
    max_streams: int = 256
    """Inbound dgpu streams served at once, all peers together."""
    reserved: int = 32
    """Of ``max_streams``, kept for protected peers (funded jobs)."""
    max_streams_per_peer: int = 16
    rate_per_s: float = 10.0
    """Streams a peer may open per second, on average."""
    burst: int = 30
    max_tracked_peers: int = 4096

    def __post_init__(self) -> None:
        if not 0 <= self.reserved < self.max_streams:
            raise ValueError("reserved must be below max_streams")


@dataclass
class _Bucket:
    tokens: float
    at: float


class StreamAdmission:
    """Counts open inbound streams per peer and says which new one may be served."""

    def __init__(
        self, config: AdmissionConfig | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.config = config or AdmissionConfig()
        self._clock = clock or trio.current_time
        self._open: Counter[str] = Counter()
        self._total = 0
        self._buckets: dict[str, _Bucket] = {}
        self._protected: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        """Refusals by reason (``total``, ``per_peer``, ``rate``), for metrics and tests."""

    # -- who is protected ------------------------------------------------------------
    def protect(self, peer: str) -> None:
        """``peer`` has a funded job here (counted: one call per job)."""
        self._protected[peer] += 1

    def unprotect(self, peer: str) -> None:
        self._protected[peer] -= 1
        if self._protected[peer] <= 0:
            del self._protected[peer]

    def is_protected(self, peer: str) -> bool:
        return peer in self._protected

    # -- streams ---------------------------------------------------------------------
    def try_admit(self, peer: str) -> str | None:
        """Count a new stream of ``peer`` and return None, or the reason it is refused
        (then nothing is counted)."""
        cfg = self.config
        if self.is_protected(peer):
            if self._total >= cfg.max_streams:
                return self._refuse("total")
        else:
            if self._total >= cfg.max_streams - cfg.reserved:
                return self._refuse("total")
            if self._open[peer] >= cfg.max_streams_per_peer:
                return self._refuse("per_peer")
            if not self._take_token(peer):
                return self._refuse("rate")
        self._open[peer] += 1
        self._total += 1
        return None

    def release(self, peer: str) -> None:
        self._open[peer] -= 1
        if self._open[peer] <= 0:
            del self._open[peer]
        self._total -= 1

    @property
    def open_streams(self) -> int:
        return self._total

    def _refuse(self, reason: str) -> str:
        self.refused[reason] += 1
        return reason

    def _take_token(self, peer: str) -> bool:
        cfg = self.config
        now = self._clock()
        bucket = self._buckets.get(peer)
        if bucket is None:
            if len(self._buckets) >= cfg.max_tracked_peers:
                self._forget_full_buckets(now)
            bucket = self._buckets[peer] = _Bucket(float(cfg.burst), now)
        else:
            refill = (now - bucket.at) * cfg.rate_per_s
            bucket.tokens = min(float(cfg.burst), bucket.tokens + refill)
            bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _forget_full_buckets(self, now: float) -> None:
        """Drop buckets that refilled (forgetting them loses nothing), else the oldest."""
        cfg = self.config
        for peer, b in list(self._buckets.items()):
            if b.tokens + (now - b.at) * cfg.rate_per_s >= cfg.burst:
                del self._buckets[peer]
        while len(self._buckets) >= cfg.max_tracked_peers:
            self._buckets.pop(next(iter(self._buckets)))
