"""Market-level mode: pricing and matching of thousands of nodes, no network layer."""

from __future__ import annotations

from typing import Any

from dgpu.pricing import DEFAULT_RATE_CARD, RateCard
from dgpu.simulations.market.engine import MarketSimulation, MarketState, Progress
from dgpu.simulations.market.report import market_report
from dgpu.simulations.scenario import Scenario


def run_market(
    scenario: Scenario,
    *,
    seed: int | None = None,
    card: RateCard = DEFAULT_RATE_CARD,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the market simulation of ``scenario`` and return its report."""
    used = scenario.seed if seed is None else seed
    state = MarketSimulation(scenario, used, card).run(progress)
    return market_report(state, seed=used)


__all__ = ["MarketSimulation", "MarketState", "run_market"]
