"""Seeded random streams: one independent ``random.Random`` per named purpose.

Each stream is seeded from ``sha256(seed, name)``, so adding draws to one part of a
simulation (say, message loss) never shifts the draws of another (job arrivals): the same
scenario and seed reproduce exactly, and a change stays local.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class Streams:
    """A family of named random streams under one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def get(self, name: str) -> random.Random:
        stream = self._streams.get(name)
        if stream is None:
            digest = hashlib.sha256(f"dgpu-sim/{self.seed}/{name}".encode()).digest()
            stream = random.Random(int.from_bytes(digest, "big"))
            self._streams[name] = stream
        return stream


def weighted_choice(rng: random.Random, items: Sequence[tuple[T, int]]) -> T:
    """One item of ``(item, weight)`` pairs, by integer weight (exact, no float)."""
    total = sum(weight for _, weight in items)
    pick = rng.randrange(total)
    for item, weight in items:
        if pick < weight:
            return item
        pick -= weight
    raise AssertionError("unreachable: pick < total")


def poisson_gap(rng: random.Random, per_second: float) -> float:
    """Seconds to the next event of a Poisson process of rate ``per_second`` (inf if 0)."""
    if per_second <= 0:
        return math.inf
    return rng.expovariate(per_second)


def stepped(rng: random.Random, low: int, high: int, step: int) -> int:
    """A uniform multiple of ``step`` in ``[low, high]`` (``low`` when none fits)."""
    first = -(-low // step)
    last = high // step
    if last < first:
        return low
    return rng.randint(first, last) * step
