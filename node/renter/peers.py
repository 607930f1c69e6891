"""The renter's memory of providers: who ran its jobs, who failed it, when to try again.

It orders offers before price does (:func:`~dgpu.node.renter.discovery.rank`), in three
standings, best first:

* **proven** — ran a job of this renter to its end (the provider reported a final state
  over the metering stream) and has not failed it since;
* **unknown** — no history with this renter. A brand-new key lands here however cheap its
  offer: no history is not a good history, so a flood of fresh keys can push proven
  providers down only among themselves, never below a new key;
* **backing off** — failed this renter (unreachable, silent, broke the protocol, vanished
  during a job) and its backoff has not run out: ``base_s * 2^(failures - 1)``, at most
  ``max_s``. Tried only after every other offer, so a renter does not pay a second
  timeout for a fake it already met.

A refusal (``no_capacity``, ``over_limit``...) is an answer, not a failure: it changes
nothing here. The memory lives in the node store (table ``peers``) when there is one, so
it survives restarts; a store that cannot be written only loses the memory, never a job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum

from dgpu.node.store import NodeStore, PeerRecord, StoreError

log = logging.getLogger(__name__)


class Standing(IntEnum):
    """Rank of a provider in the renter's own ordering: lower is tried first."""

    PROVEN = 0
    UNKNOWN = 1
    BACKING_OFF = 2


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: int = 60
    max_s: int = 6 * 3600
    forget_after_s: int = 30 * 24 * 3600
    """Records of providers not seen for this long are dropped when the memory loads."""


class PeerMemory:
    """Per-provider history of one renter (see the module docstring). ``now`` gives unix
    seconds (the network's clock)."""

    def __init__(
        self,
        store: NodeStore | None,
        *,
        now: Callable[[], int],
        policy: BackoffPolicy | None = None,
    ) -> None:
        self._store = store
        self._now = now
        self.policy = policy or BackoffPolicy()
        self._records: dict[bytes, PeerRecord] = {}
        if store is not None:
            try:
                store.forget_peers(updated_before=now() - self.policy.forget_after_s)
                self._records = {r.provider: r for r in store.peers()}
            except StoreError as exc:
                log.warning("the renter's memory of providers could not be read: %s", exc)

    def record(self, provider: bytes) -> PeerRecord:
        return self._records.get(provider) or PeerRecord(provider)

    def standing(self, provider: bytes) -> Standing:
        record = self._records.get(provider)
        if record is None:
            return Standing.UNKNOWN
        if record.failures and record.retry_after > self._now():
            return Standing.BACKING_OFF
        return Standing.PROVEN if record.successes else Standing.UNKNOWN

    def proven(self, limit: int) -> list[bytes]:
        """Up to ``limit`` providers in good standing, most recently successful first:
        the ones worth asking directly for their offer (a flood of fake provider records
        can hide them from a DHT search)."""
        good = [r for r in self._records.values() if self.standing(r.provider) is Standing.PROVEN]
        good.sort(key=lambda r: (-r.last_success_at, r.provider))
        return [r.provider for r in good[:limit]]

    def failed(self, provider: bytes, reason: str) -> None:
        now = self._now()
        record = self.record(provider)
        failures = record.failures + 1
        backoff = min(self.policy.base_s * 2 ** min(failures - 1, 32), self.policy.max_s)
        self._save(
            replace(
                record,
                failures=failures,
                retry_after=now + backoff,
                last_failure_at=now,
                last_error=reason[:256],
                updated_at=now,
            )
        )

    def succeeded(self, provider: bytes) -> None:
        now = self._now()
        record = self.record(provider)
        self._save(
            replace(
                record,
                successes=record.successes + 1,
                failures=0,
                retry_after=0,
                last_success_at=now,
                updated_at=now,
            )
        )

    def _save(self, record: PeerRecord) -> None:
        self._records[record.provider] = record
        if self._store is None:
            return
        try:
            self._store.save_peer(record)
        except StoreError as exc:
            # advisory: the job goes on; the memory just does not survive a restart
            log.warning("could not store what was seen of a provider: %s", exc)
