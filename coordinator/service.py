"""The running coordinator's state, shared by every request handler and background task."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dgpu.coordinator.auth import ReplayGuard, SignatureGuard
from dgpu.coordinator.config import CoordinatorConfig
from dgpu.coordinator.market import Market
from dgpu.coordinator.metrics import Metrics
from dgpu.coordinator.proxy import TrustedProxies
from dgpu.coordinator.ratelimit import Limiter, RateLimiter
from dgpu.coordinator.replicas import (
    SETTLER_LEASE,
    DatabaseRateLimiter,
    DatabaseReplayGuard,
    Lease,
)
from dgpu.coordinator.store import Store

if TYPE_CHECKING:
    from dgpu.coordinator.admission import Admitter
    from dgpu.coordinator.settlement import CoordinatorSettler


@dataclass
class Coordinator:
    config: CoordinatorConfig
    store: Store
    market: Market
    metrics: Metrics
    settler: CoordinatorSettler | None = None
    clock: Callable[[], float] = time.time
    admitter: Admitter | None = None
    """Probes providers before their offers are served; None: every offer is served."""
    proxies: TrustedProxies = field(init=False)
    guard: SignatureGuard = field(init=False)
    key_limiter: Limiter = field(init=False)
    ip_limiter: Limiter = field(init=False)
    replica_id: str = field(init=False)
    lease: Lease = field(init=False)
    settling: bool = False
    """Whether this replica holds the settler lease (as of its last renewal)."""

    def __post_init__(self) -> None:
        db = self.store.db
        config = self.config
        if db.dialect.name == "postgresql":  # replicas: what one sees, all must see
            self.guard = DatabaseReplayGuard(db, config.auth_window_s)
            self.key_limiter = DatabaseRateLimiter(db, config.per_key_limit, name="signer")
            self.ip_limiter = DatabaseRateLimiter(db, config.per_ip_limit, name="client address")
        else:
            self.guard = ReplayGuard(config.auth_window_s)
            self.key_limiter = RateLimiter(config.per_key_limit, name="signer")
            self.ip_limiter = RateLimiter(config.per_ip_limit, name="client address")
        self.proxies = TrustedProxies(config.trusted_proxies)
        self.replica_id = config.replica_id or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = Lease(
            db, name=SETTLER_LEASE, holder=self.replica_id, term_s=config.settler_lease_s
        )

    def now(self) -> int:
        return int(self.clock())
