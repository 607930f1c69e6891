"""Market mode: invariants, determinism, and prices/utilisation answering supply shocks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dgpu.simulations import load_scenario, run_market, to_json
from dgpu.simulations.plot import write_plots

SMALL = {
    "duration_s": 4 * 86_400,
    "providers.count": 400,
    "renters.count": 400,
    "shocks": [
        {"at_s": 86_400, "duration_s": 86_400, "model": "H100", "change": -0.5},
        {"at_s": 2 * 86_400 + 43_200, "model": "RTX 4090", "change": 1.0},
    ],
}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run_market(load_scenario("market-shock", SMALL))


def test_invariants_hold_and_jobs_add_up(report: dict[str, Any]) -> None:
    assert all(report["invariants"].values()), report["invariants"]
    jobs = report["jobs"]
    assert jobs["requested"] > 1000
    assert jobs["matched"] + jobs["unmatched"] <= jobs["requested"]
    assert jobs["completed"] + jobs["cut_off"] == jobs["matched"]
    paid = report["paid"]
    assert paid["renters_total"] == paid["providers_total"] + paid["treasury"]
    assert 0 < report["utilisation"]["mean"] < 1


def test_an_outage_raises_price_and_utilisation(report: dict[str, Any]) -> None:
    outage, glut = report["shocks"]
    assert outage["model"] == "H100" and outage["providers_affected"] > 0
    assert outage["during"]["online_gpus"] < outage["before"]["online_gpus"]
    assert outage["during"]["price"] > outage["before"]["price"]
    assert outage["during"]["utilisation"] > outage["before"]["utilisation"]
    # Supply comes back: the price falls back below its outage level.
    assert outage["after"]["price"] < outage["during"]["price"]
    assert glut["model"] == "RTX 4090"
    assert glut["during"]["online_gpus"] > glut["before"]["online_gpus"]
    assert glut["during"]["price"] < glut["before"]["price"]
    assert glut["during"]["utilisation"] < glut["before"]["utilisation"]


def test_same_seed_same_bytes_other_seed_other_run(report: dict[str, Any]) -> None:
    scenario = load_scenario("market-shock", SMALL)
    assert to_json(run_market(scenario)) == to_json(report)
    assert to_json(run_market(scenario, seed=scenario.seed + 1)) != to_json(report)


def test_plots_are_written(report: dict[str, Any], tmp_path: Path) -> None:
    paths = write_plots(report, tmp_path / "charts")
    assert [p.name for p in paths] == ["price.png", "utilisation.png", "multiplier.png"]
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG")


def test_cli_json_is_byte_identical_across_processes(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "dgpu.cli.main",
        "sim",
        "market",
        "market-shock",
        "--json",
        "--set",
        "duration_s=43200",
        "--set",
        "providers.count=100",
        "--set",
        "renters.count=100",
        "--seed",
        "5",
    ]
    first = subprocess.run(args, capture_output=True, check=True, env={"PYTHONHASHSEED": "1"})
    second = subprocess.run(args, capture_output=True, check=True, env={"PYTHONHASHSEED": "2"})
    assert first.stdout == second.stdout
    parsed = json.loads(first.stdout)
    assert parsed["seed"] == 5 and parsed["invariants"]


def test_churn_and_crashes_cut_jobs_without_overbooking() -> None:
    report = run_market(
        load_scenario(
            "market-shock",
            {
                "duration_s": 86_400,
                "providers.count": 200,
                "renters.count": 200,
                "shocks": [],
                "faults.churn.per_provider_per_day": 6.0,
                "faults.crashes.per_node_per_day": 6.0,
            },
        )
    )
    assert all(report["invariants"].values()), report["invariants"]
    jobs = report["jobs"]
    assert jobs["cut_off"] > 0
    assert jobs["completed"] + jobs["cut_off"] == jobs["matched"]
    assert report["shocks"] == []
