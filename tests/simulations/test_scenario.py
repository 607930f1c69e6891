"""Scenario files: the shipped ones load, every bad key is named in a typed error."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dgpu.pricing import DEFAULT_RATE_CARD
from dgpu.simulations import ScenarioError, load_scenario, parse_scenario, shipped_scenarios
from dgpu.simulations.scenario_toml import apply_overrides, parse_override


def minimal() -> dict[str, Any]:
    return {
        "name": "t",
        "duration_s": 3600,
        "providers": {"count": 2, "gpus": [{"model": "RTX 4090"}]},
        "renters": {"count": 3},
        "jobs": {"per_renter_per_hour": 1},
    }


def test_shipped_scenarios_load() -> None:
    names = shipped_scenarios()
    assert {"calm", "churny", "hostile", "market-shock"} <= set(names)
    for name in names:
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.providers.count >= 1


def test_defaults_and_money_in_base_units() -> None:
    data = minimal()
    data["providers"]["pricing"] = {"floor_per_gpu_hour": Decimal("0.36")}
    data["renters"]["balance"] = "2.5"
    scenario = parse_scenario(data)
    assert scenario.renters.balance == 2_500_000_000
    assert scenario.providers.pricing.floor_per_gpu_second == 100_000
    assert scenario.providers.interval_s == 10
    assert scenario.settlement.coordinator == "up"
    assert not scenario.faults.any
    assert scenario.models == ("RTX 4090",)


def test_model_names_resolve_to_the_card() -> None:
    data = minimal()
    data["providers"]["gpus"] = [{"model": "NVIDIA H100 80GB HBM3", "per_node": 8}]
    scenario = parse_scenario(data)
    assert scenario.models == ("H100",)
    assert DEFAULT_RATE_CARD.rate_for(scenario.models[0]).model == "H100"


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("name",), None, "name"),
        (("duration_s",), 0, "duration_s"),
        (("duration_s",), "long", "duration_s"),
        (("providers", "count"), -1, "providers.count"),
        (("providers", "gpus"), [], "providers.gpus"),
        (("providers", "gpus"), [{"model": "Voodoo 2"}], "providers.gpus[0].model"),
        (("providers", "gpus"), [{"model": "H100", "colour": "red"}], "providers.gpus[0]"),
        (("providers", "pricing"), {"markup_bps": [500, 100]}, "providers.pricing.markup_bps"),
        (
            ("providers", "pricing"),
            {"floor_per_gpu_hour": "0.0000000001"},
            "providers.pricing.floor_per_gpu_hour",
        ),
        (("renters", "balance"), "lots", "renters.balance"),
        (("jobs", "per_renter_per_hour"), None, "jobs.per_renter_per_hour"),
        (("jobs", "duration"), "gaussian", "jobs.duration"),
        (("jobs", "gpu_count"), [[2, 1]], "jobs.gpu_count"),
        (("jobs", "max_duration_s"), 10**7, "jobs.max_duration_s"),
        (("settlement", "coordinator"), "sometimes", "settlement.coordinator"),
        (("faults", "loss"), 1.5, "faults.loss"),
        (
            ("faults", "partitions"),
            [{"at_s": 10, "duration_s": 5}],
            "faults.partitions[0].fraction",
        ),
        (("faults", "crashes"), {"restart_after_s": [5]}, "faults.crashes.restart_after_s"),
        (("shocks",), [{"at_s": 1, "change": -0.5, "model": "A100"}], "shocks[0].model"),
        (("typo",), 1, None),
    ],
)
def test_bad_keys_are_named(path: tuple[str, ...], value: object, key: str | None) -> None:
    data = minimal()
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    assert info.value.key == key
    if key is not None:
        assert repr(key) in str(info.value)
    else:
        assert "typo" in str(info.value)


def test_overrides_and_files(tmp_path: Path) -> None:
    assert parse_override("providers.count=7") == ("providers.count", 7)
    assert parse_override("settlement.coordinator=down") == ("settlement.coordinator", "down")
    assert parse_override("faults.loss=0.25") == ("faults.loss", Decimal("0.25"))
    with pytest.raises(ScenarioError):
        parse_override("no-equals-sign")
    data = apply_overrides(minimal(), {"providers.count": 5, "faults.loss": 0.1})
    scenario = parse_scenario(data)
    assert scenario.providers.count == 5
    assert scenario.faults.loss == 0.1
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    assert load_scenario("calm", {"providers.count": 3}).providers.count == 3
