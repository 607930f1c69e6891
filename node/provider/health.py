"""Whether the provider can take jobs: its store must be writable.

A provider that cannot store receipts durably must not take new jobs (it could not
acknowledge what it is paid) and must say why, in words the operator acts on ("disk full
(ENOSPC)"), once when it happens and once when it is over. Jobs already running go on:
each receipt that cannot be stored is simply not acknowledged, and the container's
watchdog (whose deadline moves only after a durable receipt) bounds the work done in the
meantime. :meth:`StoreHealth.probe` is called periodically and clears the state once a
write succeeds again.
"""

from __future__ import annotations

import logging

from dgpu.node.store import NodeStore, StoreError

log = logging.getLogger(__name__)


class StoreHealth:
    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self.problem: StoreError | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def failed(self, exc: StoreError, doing: str) -> None:
        """Record that a write failed (``doing``: what it was for)."""
        if self.problem is None:
            log.error(
                "NOT TAKING NEW JOBS: %s (while %s); running jobs go on, receipts that "
                "cannot be stored are not acknowledged",
                exc,
                doing,
            )
        self.problem = exc

    def probe(self) -> bool:
        """Try a write; True when the store takes writes (again)."""
        if self.problem is None:
            return True
        try:
            self.store.check_writable()
        except StoreError as exc:
            self.problem = exc
            return False
        log.warning("the node store takes writes again; taking new jobs")
        self.problem = None
        return True

    def reason(self) -> str:
        """What to tell a renter that asks for a job now."""
        return f"this provider cannot take jobs now: {self.problem}"
