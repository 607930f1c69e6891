"""``dgpu sim``: network simulations (node level and market level).

    dgpu sim run SCENARIO.toml [--seed N] [--json] [--plot DIR] [--set KEY=VALUE ...]
    dgpu sim market SCENARIO.toml [--seed N] [--json] [--plot DIR] [--set KEY=VALUE ...]
    dgpu sim list

SCENARIO is a file, or the name of a shipped scenario (``calm``, ``churny``, ``hostile``,
``market-shock``). ``--json`` prints one JSON object with ``"invariants"``; the command
exits with status 1 when any invariant is false. The same scenario and seed print the
same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import click
from dgpu.cli.output import emit_json, stderr
from dgpu.pricing import base_units_to_dgpu
from dgpu.simulations.report import all_hold
from dgpu.simulations.scenario import Scenario
from dgpu.simulations.scenario_toml import load_scenario, parse_override, shipped_scenarios
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


@click.group("sim")
def command() -> None:
    """Simulate many nodes in virtual time, with faults, or a whole market."""


def _common(fn: Callable[..., None]) -> Callable[..., None]:
    fn = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a scenario key, e.g. --set providers.count=20 (repeatable).",
    )(fn)
    fn = click.option(
        "--plot",
        "plot_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Write PNG charts into this folder.",
    )(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")(fn)
    fn = click.option("--seed", type=int, help="Seed (default: the scenario's).")(fn)
    fn = click.argument("scenario")(fn)
    return fn


NODE_SECONDS_PER_S: Final = 80_000
"""Simulated node-seconds the node-level simulation runs per wall second, roughly (calm:
32 nodes x 6 h in ~9 s on one core of the CI machine): only for the estimate below."""
ASK_ABOVE_S: Final = 300
"""A node-level run estimated longer than this wants ``--yes``."""


def estimated_wall_s(sc: Scenario) -> int:
    """A rough wall-time estimate of ``dgpu sim run`` on ``sc`` (it scales with nodes x time)."""
    return sc.nodes * sc.duration_s // NODE_SECONDS_PER_S


@command.command("run")
@_common
@click.option("--yes", is_flag=True, help="Run even when the estimate says it takes long.")
def run(
    scenario: str,
    seed: int | None,
    as_json: bool,
    plot_dir: Path | None,
    overrides: tuple[str, ...],
    yes: bool,
) -> None:
    """Run the real provider and renter logic of SCENARIO on the in-memory network."""
    from dgpu.simulations.nodes import run_nodes

    sc = _load(scenario, overrides)
    estimate = estimated_wall_s(sc)
    if estimate > ASK_ABOVE_S and not yes:
        raise click.UsageError(
            f"scenario {sc.name!r} has {sc.nodes:,} nodes over {sc.duration_s / 86_400:.1f} "
            f"simulated days: running the real node code would take roughly "
            f"{_duration(estimate)}. Market-scale scenarios are for `dgpu sim market "
            f"{scenario}` (pricing and matching, seconds); add --yes to run it node by node "
            "anyway, or shrink it with --set (e.g. --set providers.count=20)."
        )
    with _progress(f"simulating {sc.name} ({sc.nodes} nodes)") as tick:
        report = run_nodes(sc, seed=seed, progress=tick)
    _finish(report, as_json, plot_dir)


@command.command("market")
@_common
def market(
    scenario: str,
    seed: int | None,
    as_json: bool,
    plot_dir: Path | None,
    overrides: tuple[str, ...],
) -> None:
    """Run SCENARIO at market level: pricing and matching only, no network."""
    from dgpu.simulations.market import run_market

    sc = _load(scenario, overrides)
    with _progress(f"market {sc.name} ({sc.nodes} nodes)") as tick:
        report = run_market(sc, seed=seed, progress=tick)
    _finish(report, as_json, plot_dir)


def _duration(seconds: int) -> str:
    if seconds >= 2 * 86_400:
        return f"{seconds // 86_400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    return f"{max(1, seconds // 60)} minutes"


@command.command("list")
def list_scenarios() -> None:
    """List the shipped scenarios."""
    for name in shipped_scenarios():
        sc = load_scenario(name)
        click.echo(f"{name:14} {sc.description}")


def _load(scenario: str, overrides: tuple[str, ...]) -> Scenario:
    root = click.get_current_context().find_root()
    if not root.params.get("verbose"):
        # Injected faults make the nodes log warnings by the hundred: keep them for -v.
        logging.getLogger("dgpu.node").setLevel(logging.ERROR)
    return load_scenario(scenario, dict(parse_override(item) for item in overrides))


@contextmanager
def _progress(label: str) -> Iterator[Callable[[float], None]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% of simulated time"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=1.0)
        yield lambda done: bar.update(task, completed=done)


def _finish(report: Mapping[str, Any], as_json: bool, plot_dir: Path | None) -> None:
    if plot_dir is not None:
        from dgpu.simulations.plot import write_plots

        for path in write_plots(report, plot_dir):
            stderr.print(f"wrote {path}", highlight=False)
    if as_json:
        emit_json(report)
    else:
        _summary(report)
    if not all_hold(report):
        raise SystemExit(1)


def _summary(report: Mapping[str, Any]) -> None:
    echo = click.echo
    echo(
        f"scenario {report['scenario']} (seed {report['seed']}, {report['mode']} level, "
        f"{report['duration_s']} s simulated)"
    )
    jobs = report["jobs"]
    echo("jobs      " + ", ".join(f"{k} {_count(v)}" for k, v in jobs.items()))
    echo(f"GPU use   mean {report['utilisation']['mean']:.1%}")
    for model, price in report["prices"].items():
        echo(
            f"price     {model:9} mean {price['mean']} min {price['min']} max {price['max']} "
            "base units per GPU-second"
        )
    for key, value in report["paid"].items():
        if isinstance(value, int):
            echo(f"paid      {key:22} {_dgpu(value)} dGPU")
    for key in ("exposure", "overpayment"):
        if key in report:
            echo(f"{key:11} largest {_dgpu(report[key]['largest'])} dGPU")
    if "settlement" in report:
        s = report["settlement"]
        echo(f"settled   {s['transactions']} transactions, {s['receipts']} receipts")
    for shock in report.get("shocks", []):
        before, during = shock["before"], shock["during"]
        echo(
            f"shock     {shock['model']} {shock['change']:+g} at {shock['at_s']} s: "
            f"price {before['price']} -> {during['price']}, "
            f"utilisation {before['utilisation']} -> {during['utilisation']}"
        )
    for name, ok in report["invariants"].items():
        echo(f"invariant {name:36} {'ok' if ok else 'FAILED'}")


def _dgpu(amount: int) -> str:
    return f"{base_units_to_dgpu(amount):f}"


def _count(value: object) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} {v}" for k, v in value.items()) + ")"
    return str(value)
