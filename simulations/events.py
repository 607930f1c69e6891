"""A deterministic discrete-event queue: a heap of ``(time, seq, event)``.

Ties in time are broken by ``seq``, the order of scheduling, so the same inputs pop in
the same order on every run (never by comparing events, never by identity).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Generic, TypeVar

E = TypeVar("E")


@dataclass
class EventQueue(Generic[E]):
    now: float = 0.0
    _heap: list[tuple[float, int, E]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def schedule(self, at: float, event: E) -> None:
        """Schedule ``event`` at time ``at`` (never before ``now``)."""
        heapq.heappush(self._heap, (max(at, self.now), next(self._seq), event))

    def after(self, delay: float, event: E) -> None:
        self.schedule(self.now + delay, event)

    def pop(self) -> tuple[float, E]:
        """The next event; advances ``now`` to its time."""
        at, _, event = heapq.heappop(self._heap)
        self.now = at
        return at, event

    def peek_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
