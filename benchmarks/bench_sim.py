"""Simulation scale: wall-clock time of the node level and of the market level.

Node level: a day of simulated time with 200 nodes running the real node code (provider
and renter roles, metering every 10 s, the in-memory network under MockClock, the
escrow ledger proven equal to the program). Market level: the shipped ``market-shock``
scenario, 10,000 providers and renters over a week.

    .venv/bin/python benchmarks/bench_sim.py [--hours 24] [--nodes 200] [--skip-market]
"""

from __future__ import annotations

import argparse
import json
import time

from dgpu.simulations import load_scenario, run_market
from dgpu.simulations.nodes import run_nodes


def node_level(hours: float, nodes: int) -> dict[str, object]:
    providers = max(1, nodes * 35 // 100)
    scenario = load_scenario(
        "calm",
        {
            "duration_s": int(hours * 3600),
            "providers.count": providers,
            "renters.count": nodes - providers,
            "jobs.per_renter_per_hour": 0.6,
            "chain.backend": "ledger",
        },
    )
    started, cpu = time.perf_counter(), time.process_time()
    report = run_nodes(scenario)
    wall = time.perf_counter() - started
    return {
        "nodes": nodes,
        "providers": providers,
        "simulated_s": scenario.duration_s,
        "wall_s": round(wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "speedup": round(scenario.duration_s / wall),
        "jobs": report["jobs"],
        "utilisation": report["utilisation"]["mean"],
        "settlement_transactions": report["settlement"]["transactions"],
        "receipts_settled": report["settlement"]["receipts"],
        "invariants_hold": all(report["invariants"].values()),
    }


def market_level() -> dict[str, object]:
    scenario = load_scenario("market-shock")
    started, cpu = time.perf_counter(), time.process_time()
    report = run_market(scenario)
    wall = time.perf_counter() - started
    return {
        "nodes": scenario.nodes,
        "simulated_s": scenario.duration_s,
        "wall_s": round(wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "jobs": report["jobs"],
        "utilisation": report["utilisation"]["mean"],
        "shocks": [
            {
                "model": s["model"],
                "change": s["change"],
                "price": [s["before"]["price"], s["during"]["price"]],
                "utilisation": [s["before"]["utilisation"], s["during"]["utilisation"]],
            }
            for s in report["shocks"]
        ],
        "invariants_hold": all(report["invariants"].values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--skip-market", action="store_true")
    parser.add_argument("--skip-nodes", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {}
    if not args.skip_nodes:
        results["node_level"] = node_level(args.hours, args.nodes)
        print(json.dumps({"node_level": results["node_level"]}, indent=1), flush=True)
    if not args.skip_market:
        results["market_level"] = market_level()
        print(json.dumps({"market_level": results["market_level"]}, indent=1), flush=True)


if __name__ == "__main__":
    main()
