"""dgpu.simulations: many nodes in virtual time, with faults; and market-level dynamics.

- :func:`run_nodes` (``dgpu sim run``): the real provider and renter logic on the
  in-memory network under trio's MockClock, with the escrow program in LiteSVM (or the
  ledger the tests prove equivalent to it on the same operations).
- :func:`run_market` (``dgpu sim market``): pricing and matching of thousands of nodes
  over days, without a network, to see prices and utilisation answer supply shocks.

Both read a :class:`Scenario` (:func:`load_scenario`; format in
:mod:`dgpu.simulations.scenario_toml`) and return a JSON-ready report whose
``"invariants"`` must all hold. Errors: :mod:`dgpu.simulations.errors`.
"""

from dgpu.simulations.errors import DeterminismUnavailable, ScenarioError, SimulationError
from dgpu.simulations.market import run_market
from dgpu.simulations.report import all_hold, to_json
from dgpu.simulations.scenario import Scenario
from dgpu.simulations.scenario_toml import (
    load_scenario,
    parse_override,
    parse_scenario,
    shipped_scenarios,
)

__all__ = [
    "DeterminismUnavailable",
    "Scenario",
    "ScenarioError",
    "SimulationError",
    "all_hold",
    "load_scenario",
    "parse_override",
    "parse_scenario",
    "run_market",
    "shipped_scenarios",
    "to_json",
]
