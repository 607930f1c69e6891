"""Node-level mode: the real node logic on the in-memory network under a virtual clock.

See :mod:`.runner` for what runs, :mod:`.accounting` for what is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
import trio.testing
from dgpu.simulations.determinism import seeded_scheduler
from dgpu.simulations.nodes.accounting import node_report
from dgpu.simulations.nodes.runner import NodeSimulation
from dgpu.simulations.scenario import Scenario


def run_nodes(
    scenario: Scenario,
    *,
    seed: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` at node level and return its report (the same bytes for the same
    scenario and seed)."""
    used = scenario.seed if seed is None else seed
    sim = NodeSimulation(scenario, used, progress)
    with seeded_scheduler(used):
        trio.run(sim.run, clock=trio.testing.MockClock(autojump_threshold=0))
    assert sim.held is not None
    return node_report(sim, sim.held)


__all__ = ["NodeSimulation", "run_nodes"]
