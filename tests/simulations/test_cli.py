"""``dgpu sim``: listing, scenario errors in words, and the exit status of a failed invariant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from dgpu.cli.cmd_sim import _finish, command


def test_list_names_the_shipped_scenarios() -> None:
    result = CliRunner().invoke(command, ["list"])
    assert result.exit_code == 0
    for name in ("calm", "churny", "hostile", "market-shock"):
        assert name in result.output


def test_a_bad_scenario_key_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nduration_s = 10\n[providers]\ncount = "many"\n')
    result = CliRunner().invoke(command, ["market", str(bad)])
    assert result.exit_code != 0
    assert "providers.count" in str(result.exception)


def test_any_false_invariant_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    report = {"scenario": "x", "invariants": {"tokens_conserved": True, "renters_refunded": False}}
    with pytest.raises(SystemExit) as info:
        _finish(report, True, None)
    assert info.value.code == 1
    assert json.loads(capsys.readouterr().out)["invariants"]["renters_refunded"] is False
    _finish({**report, "invariants": {"tokens_conserved": True}}, True, None)


def test_a_market_scale_scenario_is_pointed_to_sim_market() -> None:
    result = CliRunner().invoke(command, ["run", "market-shock"])
    assert result.exit_code == 2
    assert "dgpu sim market market-shock" in result.output
    assert "--yes" in result.output


def test_the_estimate_grows_with_nodes_and_time() -> None:
    from dgpu.cli.cmd_sim import ASK_ABOVE_S, estimated_wall_s
    from dgpu.simulations.scenario_toml import load_scenario

    calm = load_scenario("calm")
    assert estimated_wall_s(calm) <= ASK_ABOVE_S
    assert estimated_wall_s(load_scenario("market-shock")) > ASK_ABOVE_S
    bigger = load_scenario("calm", {"duration_s": calm.duration_s * 100})
    assert estimated_wall_s(bigger) > estimated_wall_s(calm)
