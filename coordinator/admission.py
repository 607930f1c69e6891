"""Admission of offers: what a provider must show before the index serves its offers.

A signed offer proves only that someone holds a key; keys are free, so a flood of fresh keys
offering at price 1 would otherwise fill every search (issue 12, attack 6). Three things
stand in the way, each cheap for an honest provider:

1. **Limits at ingest** (:class:`~dgpu.coordinator.store.OfferAdmission`, in the database so
   every replica sees the same counts): live offers per key, and new keys per client address
   per hour. Refusals are 422 ``too_many_offers`` and 429 ``too_many_new_keys``.
2. **Reachability with proof of key**: with a :class:`Prober`, an offer is stored *pending*
   and served only once the coordinator has reached its provider at the offer's own
   addresses and the provider proved its key over that connection (libp2p's Noise
   handshake binds the connection to the peer ID, which is the offer's key; ``/p2p-circuit``
   addresses count, reached through their relay). Results are kept per key for
   ``probe_ttl_s`` (a refused one for ``failed_probe_retry_s``) and re-probed when they run
   out, so a provider that went away loses its place within that time. The prober lives
   outside this package (``dgpu coordinator serve`` injects the libp2p one: the coordinator
   may not import the node); without one every offer is admitted at once and ``/healthz``
   says ``"probing": false``.
3. **History ranks first** (:mod:`dgpu.coordinator.scores`): a key without a completed job
   scores at most a quarter of what it would, and searches put proven providers first.

A reachable fake with a real libp2p host passes 2 but not 3; the limits of 1 bound how many
such hosts one address can register.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dgpu.coordinator.config import AdmissionLimits
from dgpu.coordinator.metrics import Metrics
from dgpu.coordinator.store import Due, Store
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import public_key_of_address

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    reachable: bool
    """Reached at one of the offer's addresses, and proved the offer's key there."""
    detail: str
    """In words: how it was reached, or why not."""


class Prober(Protocol):
    """Reaches a provider and checks that it holds ``provider`` (a 32-byte public key)."""

    async def probe(self, provider: bytes, multiaddrs: Sequence[str]) -> ProbeResult: ...


class Admitter:
    """Probes the providers whose offers wait (or whose last probe ran out), a few at a
    time, and admits or withdraws their offers. One per replica; they share the results
    through the store."""

    def __init__(
        self,
        store: Store,
        prober: Prober,
        limits: AdmissionLimits,
        metrics: Metrics,
        now: Callable[[], int],
    ) -> None:
        self.store = store
        self.prober = prober
        self.limits = limits
        self.metrics = metrics
        self.now = now
        self._wake = asyncio.Event()
        self._busy: set[str] = set()

    def wake(self) -> None:
        """A new offer is pending: look for due probes now, not at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        """Probe rounds forever (cancel to stop); a failed round is logged and retried."""
        while True:
            try:
                await self.round()
            except Exception:  # a background task's boundary: log, count, keep going
                log.exception("admission probe round failed")
                self.metrics.failures.labels("probe").inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.limits.probe_every_s)
            self._wake.clear()

    async def round(self) -> int:
        """Probe every due provider (at most ``probe_concurrency`` at once); how many."""
        limits = self.limits
        due = [
            d
            for d in await self.store.admission.due(self.now(), limit=limits.probe_concurrency * 4)
            if d.provider not in self._busy
        ]
        if not due:
            return 0
        gate = asyncio.Semaphore(limits.probe_concurrency)
        async with asyncio.TaskGroup() as tasks:
            for item in due:
                self._busy.add(item.provider)
                tasks.create_task(self._probe_one(item, gate))
        return len(due)

    async def _probe_one(self, item: Due, gate: asyncio.Semaphore) -> None:
        try:
            async with gate:
                result = await self._ask(item)
            valid_for = (
                self.limits.probe_ttl_s if result.reachable else self.limits.failed_probe_retry_s
            )
            changed = await self.store.admission.record(
                item.provider,
                reachable=result.reachable,
                detail=result.detail,
                now=self.now(),
                valid_for=valid_for,
            )
            self.metrics.probes.labels("reachable" if result.reachable else "refused").inc()
            log.info(
                "probe of %s: %s (%s); %d offers %s",
                item.provider,
                "reachable" if result.reachable else "not admitted",
                result.detail,
                changed,
                "admitted" if result.reachable else "withdrawn",
            )
        finally:
            self._busy.discard(item.provider)

    async def _ask(self, item: Due) -> ProbeResult:
        try:
            key = public_key_of_address(item.provider)
        except DgpuError as exc:
            return ProbeResult(False, f"not a provider key: {exc}")
        try:
            async with asyncio.timeout(self.limits.probe_timeout_s + 1.0):
                return await self.prober.probe(key, item.multiaddrs)
        except TimeoutError:
            return ProbeResult(False, f"no answer within {self.limits.probe_timeout_s:g}s")
        except DgpuError as exc:
            return ProbeResult(False, str(exc))
