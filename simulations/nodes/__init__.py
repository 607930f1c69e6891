"""Node-level mode: the real node logic on the in-memory network (being written)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dgpu.simulations.errors import SimulationError
from dgpu.simulations.scenario import Scenario


def run_nodes(
    scenario: Scenario,
    *,
    seed: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    raise SimulationError("the node-level simulation is not available yet")
