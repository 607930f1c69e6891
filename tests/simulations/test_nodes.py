"""Node-level simulations of the shipped scenarios (small sizes): the real provider role,
the in-memory network under MockClock, the escrow in LiteSVM or the proven ledger."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dgpu.simulations import load_scenario, to_json
from dgpu.simulations.nodes import run_nodes
from dgpu.simulations.plot import write_plots

SMALL: dict[str, object] = {
    "duration_s": 5400,
    "providers.count": 4,
    "renters.count": 8,
    "jobs.per_renter_per_hour": 1.5,
    "jobs.mean_duration_s": 900,
    "jobs.max_duration_s": 3600,
}
INVARIANTS = {
    "tokens_conserved",
    "no_payment_beyond_receipt",
    "renters_refunded",
    "providers_paid_their_receipts",
    "fees_to_treasury",
}


def run(name: str, **extra: object) -> dict[str, Any]:
    return run_nodes(load_scenario(name, {**SMALL, **extra}))


def assert_invariants(report: dict[str, Any]) -> None:
    assert set(report["invariants"]) == INVARIANTS
    assert all(report["invariants"].values()), report["invariants"]


def assert_money_adds_up(report: dict[str, Any]) -> None:
    paid = report["paid"]
    assert paid["renters_total"] == paid["providers_total"] + paid["treasury"]
    assert paid["deposited_total"] == paid["renters_total"] + paid["refunded_total"]
    assert sum(paid["per_provider"].values()) == paid["providers_total"]
    assert sum(paid["per_renter"].values()) == paid["renters_total"]


@pytest.fixture(scope="module")
def calm() -> dict[str, Any]:
    return run("calm")


def test_calm_market_completes_jobs_and_pays_exactly(calm: dict[str, Any]) -> None:
    assert_invariants(calm)
    assert_money_adds_up(calm)
    assert "LiteSVM" in calm["engine"]["escrow"]
    assert calm["engine"]["provider"].startswith("dgpu.node.provider.Provider")
    assert calm["engine"]["renter"].startswith("dgpu.node.renter.Renter")
    jobs = calm["jobs"]
    assert jobs["completed"] > 5
    assert jobs["cut_off"] == {}
    assert calm["overpayment"]["largest"] == 0
    # Without faults every second of work is paid by the final receipt.
    assert calm["exposure"]["largest"] == 0
    settlement = calm["settlement"]
    assert settlement["by_coordinator"]["transactions"] > 0
    assert settlement["by_providers"]["transactions"] == 0
    assert 0 < settlement["bytes_max"] <= 1232
    assert 0 < calm["utilisation"]["mean"] < 1


def test_churny_network_cuts_jobs_but_loses_no_money() -> None:
    report = run(
        "churny",
        **{
            "faults.crashes.per_node_per_day": 12.0,
            "faults.churn.per_provider_per_day": 12.0,
            "faults.partitions": [{"at_s": 1800, "duration_s": 600, "fraction": 0.3}],
        },
    )
    assert_invariants(report)
    assert_money_adds_up(report)
    faults = report["faults"]
    assert faults["crashes"] + faults["leaves"] > 0
    assert faults["partitions"][0]["nodes_cut_off"] == 4
    assert sum(report["jobs"]["cut_off"].values()) > 0
    assert report["overpayment"]["largest"] == 0


def test_hostile_peers_are_refused_and_providers_settle_themselves() -> None:
    report = run(
        "hostile", **{"faults.over_report.fraction": 0.5, "faults.stop_paying.fraction": 0.5}
    )
    assert_invariants(report)
    assert_money_adds_up(report)
    faults = report["faults"]
    assert faults["over_reporting_providers"] > 0
    assert faults["reports_refused_by_renters"] > 0
    assert report["jobs"]["cut_off"].get("non_payment", 0) > 0
    # The renter never signs for more than its own clock allows: nothing overpaid.
    assert report["overpayment"]["largest"] == 0
    # The censoring coordinator dropped receipts; their providers settled them.
    settlement = report["settlement"]
    assert settlement["receipts_dropped_by_coordinator"] > 0
    assert settlement["by_providers"]["transactions"] > 0
    # An unpaid provider stops within interval + grace: its loss per job stays small.
    per_second = max(p["max"] for p in report["prices"].values()) * 2  # 2 GPUs at most
    scenario = load_scenario("hostile")
    window = 2 * scenario.providers.interval_s + scenario.providers.grace_s + 5
    assert 0 < report["exposure"]["largest_job"] <= per_second * window


def test_a_coordinator_that_is_down_changes_who_settles() -> None:
    report = run("calm", **{"settlement.coordinator": "down", "chain.backend": "ledger"})
    assert_invariants(report)
    assert "MemoryLedger" in report["engine"]["escrow"]
    assert report["settlement"]["by_coordinator"]["transactions"] == 0
    assert report["settlement"]["by_providers"]["transactions"] > 0
    assert report["jobs"]["completed"] > 0


def test_the_ledger_and_litesvm_give_the_same_run(calm: dict[str, Any]) -> None:
    ledger = run("calm", **{"chain.backend": "ledger"})
    for key in ("jobs", "paid", "exposure", "overpayment", "settlement", "series"):
        assert ledger[key] == calm[key], key


def test_same_seed_same_bytes(calm: dict[str, Any]) -> None:
    again = run("calm")
    assert to_json(again) == to_json(calm)
    other = run_nodes(load_scenario("calm", SMALL), seed=99)
    assert to_json(other) != to_json(calm)


def test_cli_json_across_processes_and_plots(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "dgpu.cli.main",
        "sim",
        "run",
        "churny",
        "--json",
        "--plot",
        str(tmp_path / "charts"),
    ]
    for key, value in SMALL.items():
        args += ["--set", f"{key}={value}"]
    runs = [
        subprocess.run(args, capture_output=True, check=False, env={"PYTHONHASHSEED": seed})
        for seed in ("1", "2")
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr.decode()
    assert runs[0].stdout == runs[1].stdout
    report = json.loads(runs[0].stdout)
    assert all(report["invariants"].values())
    names = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert names == ["exposure.png", "price.png", "utilisation.png"]


def test_node_report_plots(calm: dict[str, Any], tmp_path: Path) -> None:
    paths = write_plots(calm, tmp_path)
    assert [p.name for p in paths] == ["price.png", "utilisation.png", "exposure.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
