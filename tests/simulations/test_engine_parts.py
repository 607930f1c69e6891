"""The deterministic building blocks: event queue order, seeded streams, distributions."""

from __future__ import annotations

import random

from dgpu.simulations.events import EventQueue
from dgpu.simulations.report import distribution, ratio
from dgpu.simulations.rng import Streams, stepped, weighted_choice


def test_event_queue_breaks_ties_by_scheduling_order() -> None:
    queue: EventQueue[str] = EventQueue()
    queue.schedule(5, "b")
    queue.schedule(1, "a")
    queue.schedule(5, "c")
    queue.schedule(5, "d")
    order = [queue.pop() for _ in range(4)]
    assert order == [(1, "a"), (5, "b"), (5, "c"), (5, "d")]
    assert queue.now == 5
    queue.schedule(2, "late")  # never before now
    assert queue.pop() == (5, "late")
    assert not queue


def test_streams_are_independent_and_reproducible() -> None:
    one, two = Streams(7), Streams(7)
    first = [one.get("arrivals").random() for _ in range(3)]
    two.get("loss").random()  # drawing from another stream shifts nothing
    assert [two.get("arrivals").random() for _ in range(3)] == first
    assert Streams(8).get("arrivals").random() != first[0]


def test_weighted_choice_and_steps() -> None:
    rng = random.Random(1)
    picks = [weighted_choice(rng, [("a", 1), ("b", 3)]) for _ in range(4000)]
    assert 800 < picks.count("a") < 1200
    values = {stepped(rng, -1500, 2500, 100) for _ in range(2000)}
    assert min(values) == -1500 and max(values) == 2500
    assert all(v % 100 == 0 for v in values)
    assert stepped(rng, 7, 9, 100) == 7


def test_distribution_and_ratio() -> None:
    d = distribution([0, 0, 5, 10, 100])
    assert d["count"] == 5 and d["max"] == 100 and d["p50"] == 5
    assert sum(count for _, count in d["histogram"]) == 5
    assert distribution([])["count"] == 0
    assert ratio(1, 3) == 0.3333 and ratio(1, 0) == 0.0
