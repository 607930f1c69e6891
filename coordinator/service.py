"""The running coordinator's state, shared by every request handler and background task."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dgpu.coordinator.auth import ReplayGuard
from dgpu.coordinator.config import CoordinatorConfig
from dgpu.coordinator.market import Market
from dgpu.coordinator.metrics import Metrics
from dgpu.coordinator.ratelimit import RateLimiter
from dgpu.coordinator.store import Store

if TYPE_CHECKING:
    from dgpu.coordinator.settlement import CoordinatorSettler


@dataclass
class Coordinator:
    config: CoordinatorConfig
    store: Store
    market: Market
    metrics: Metrics
    settler: CoordinatorSettler | None = None
    clock: Callable[[], float] = time.time
    guard: ReplayGuard = field(init=False)
    key_limiter: RateLimiter = field(init=False)
    ip_limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.guard = ReplayGuard(self.config.auth_window_s)
        self.key_limiter = RateLimiter(self.config.per_key_limit, name="signer")
        self.ip_limiter = RateLimiter(self.config.per_ip_limit, name="client address")

    def now(self) -> int:
        return int(self.clock())
