"""``dgpu devnet``: a whole dgpu network on this machine, with one command.

Starts a local chain (LiteSVM with the escrow program and a dGPU mint, over JSON-RPC),
funds a wallet for every node, starts the coordinator and its explorer, a bootstrap peer
and N providers (real NVML if present, otherwise simulated GPUs, clearly labelled; the
Docker executor when a Docker engine answers, otherwise the local-process executor).
``--demo`` also runs a renter's job end to end and prints a summary read from the chain.

While it runs, a part that dies is restarted on the same ports with the same state
(:mod:`dgpu.cli.devnet.supervisor`); only Ctrl-C or SIGTERM stops the devnet.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

import click
from dgpu.cli import profile as profiles
from dgpu.cli.devnet.demo import run_demo
from dgpu.cli.devnet.hosts import HOSTS_TOPOLOGIES, HostsTopology, check_hosts, open_hosts
from dgpu.cli.devnet.parts import (
    Options,
    Running,
    profile_values,
    run_args,
    short_run_args,
    start_network,
)
from dgpu.cli.devnet.ports import choose_ports, read_state, write_state
from dgpu.cli.devnet.status import render
from dgpu.cli.devnet.supervisor import DevnetError, Supervisor, supervised
from dgpu.cli.devnet.wallets import load_wallets
from dgpu.cli.output import emit_json, stderr
from dgpu.pricing import base_units_to_dgpu
from rich.live import Live

log = logging.getLogger(__name__)
DEFAULT_STATE = Path.home() / ".dgpu" / "devnet"


def docker_answers() -> bool:
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (docker.errors.DockerException, OSError):
        return False


def cleanup_containers(running: Running | None) -> int:
    """Remove every container a devnet provider started (labelled with its address)."""
    if running is None or not docker_answers():
        return 0
    import docker

    client = docker.from_env(timeout=10)
    removed = 0
    try:
        for owner in running.provider_addresses:
            for container in client.containers.list(
                all=True, filters={"label": f"dgpu.owner={owner}"}
            ):
                container.remove(force=True)
                removed += 1
    finally:
        client.close()
    return removed


@click.command("devnet")
@click.option("--providers", default=3, show_default=True, help="Provider nodes to start.")
@click.option("--demo", is_flag=True, help="Run a sample job end to end, print a summary, exit.")
@click.option(
    "--keep", is_flag=True, help="With --demo: keep the devnet (and its explorer) up afterwards."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="The --demo summary (or, without --demo, the addresses once up) as one JSON object.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE,
    show_default=True,
    help="Wallets, databases and logs; reused by the next run.",
)
@click.option("--fresh", is_flag=True, help="Delete the state directory first.")
@click.option(
    "--hosts",
    type=click.Choice(HOSTS_TOPOLOGIES),
    default=None,
    help="Spread the devnet over simulated hosts (Linux network namespaces; root): chain,"
    " coordinator and bootstrap on a public host, providers behind the topology's NAT"
    " (public: none; nat: a home router; double-nat: renter behind one too; symmetric:"
    " a symmetric NAT, relay only), the demo's renter on its own host.",
)
@click.option(
    "--executor",
    type=click.Choice(["auto", "docker", "local"]),
    default="auto",
    show_default=True,
    help="Docker when an engine answers (auto), else local processes.",
)
def command(
    providers: int,
    demo: bool,
    keep: bool,
    as_json: bool,
    state_dir: Path,
    fresh: bool,
    hosts: HostsTopology | None,
    executor: str,
) -> None:
    """Start a local dgpu network: chain, coordinator + explorer, bootstrap, providers."""
    if providers < 1:
        raise click.BadParameter("at least one provider", param_hint="--providers")
    if keep and not demo:
        raise click.BadParameter("only with --demo", param_hint="--keep")
    if hosts is not None:
        check_hosts()  # before anything is written: no root, nothing done
    if fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    if executor == "auto":
        executor = "docker" if docker_answers() else "local"
        if executor == "local":
            stderr.print(
                "notice: no Docker engine answers; providers use the local-process executor"
            )
    options = Options(
        state_dir=state_dir,
        providers=providers,
        executor=executor,
        ports=choose_ports(state_dir, providers),
    )
    wallets = load_wallets(state_dir, providers)
    _stop_on_sigterm()
    running: Running | None = None
    lab_id: str | None = None
    with ExitStack() as stack, supervised(state_dir) as sup:
        # the supervisor (entered last) stops the parts before the lab goes away
        try:
            if hosts is not None:
                with stderr.status(f"building the network lab ({hosts})…"):
                    lab, placement = stack.enter_context(open_hosts(hosts))
                options, lab_id = dataclasses.replace(options, placement=placement), lab.id
                write_state(state_dir, {**read_state(state_dir), "lab": lab_id})
                stderr.print(
                    f"network lab {lab.id} ({hosts}): server {placement.server_ip},"
                    f" providers on {placement.provider_ip}",
                    highlight=False,
                )
            with stderr.status("starting the devnet (chain, coordinator, bootstrap, providers)…"):
                running = start_network(sup, options, wallets)
            if demo:
                with stderr.status("running the demo job (find, negotiate, fund, run, pay)…"):
                    summary = run_demo(options, running, wallets)
                if not keep:
                    # the devnet stops when the demo ends: hand out no URL nobody answers
                    summary = {**summary, "explorer_url": None}
                (state_dir / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
                _print_summary(summary, as_json)
                if not keep:
                    return
            profile = _write_profile(options, running)
            args = short_run_args(profile) if profile is not None else run_args(options, running)
            ready = {
                "rpc_url": running.rpc_url,
                "mint": str(running.mint),
                "coordinator_url": running.coordinator_url,
                "explorer_url": running.explorer_url,
                "bootstrap": running.bootstrap,
                "providers": list(running.provider_addresses),
                "run_command": ["dgpu", *args],
                "profile": DEVNET_PROFILE if profile is not None else None,
                "ports": options.ports.as_json(),
                "pids": sup.pids(),
                "hosts": hosts,
                "lab": lab_id,
            }
            write_state(state_dir, ready)
            if as_json and not demo:  # --demo --json printed its summary already
                emit_json(ready)
            _watch(sup, running, args, state_dir)
        except KeyboardInterrupt:
            stderr.print("stopping…")
        except DevnetError as exc:
            raise DevnetError(f"{exc}\n(logs: {state_dir / 'logs'})") from None
        finally:
            sup.stop_all()
            removed = cleanup_containers(running)
            if removed:
                stderr.print(f"removed {removed} leftover container(s)")


DEVNET_PROFILE = "devnet"


def _write_profile(options: Options, running: Running) -> str | None:
    """Write the ``devnet`` profile (and make it the current one unless another is).
    Returns what ``dgpu run`` then needs to name (``""``: nothing, it is current), or
    None when the config file could not be written (the full command still works)."""
    try:
        config = profiles.load(profiles.config_path())
        values: dict[str, profiles.Value | None] = {
            k: None for k in config.profiles.get(DEVNET_PROFILE, profiles.Profile("")).values
        }
        values.update(profile_values(options, running))
        config = profiles.with_values(config, DEVNET_PROFILE, values)
        if config.current in (None, DEVNET_PROFILE):
            config = profiles.with_current(config, DEVNET_PROFILE)
        profiles.save(config)
    except (profiles.ProfileError, OSError) as exc:
        stderr.print(f"[yellow]the devnet profile was not written:[/] {exc}", highlight=False)
        return None
    if config.current == DEVNET_PROFILE:
        stderr.print(f"profile {DEVNET_PROFILE!r} written to {config.path} and in use")
        return ""
    stderr.print(
        f"profile {DEVNET_PROFILE!r} written to {config.path} (in use: {config.current!r};"
        f" `dgpu config use {DEVNET_PROFILE}` to switch)",
        highlight=False,
    )
    return DEVNET_PROFILE


def _watch(sup: Supervisor, running: Running, args: list[str], state_dir: Path) -> None:
    """Show the panel and restart dead parts until Ctrl-C/SIGTERM (KeyboardInterrupt)."""
    with Live(render(sup, running, ["dgpu", *args]), console=stderr, refresh_per_second=1) as live:
        while True:
            time.sleep(1)
            events = sup.revive()
            for line in events:
                # above the panel, and kept in the scrollback: what happened when
                live.console.print(f"[yellow]{time.strftime('%H:%M:%S')} {line}[/]")
            if events:
                write_state(state_dir, {**read_state(state_dir), "pids": sup.pids()})
            live.update(render(sup, running, ["dgpu", *args]))


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _print_summary(summary: dict[str, object], as_json: bool) -> None:
    if as_json:
        emit_json(summary)
        return

    def dgpu(key: str) -> str:
        value = summary[key]
        assert isinstance(value, int)
        return f"{base_units_to_dgpu(value)} dGPU ({value} base units)"

    stderr.print("[bold green]demo job completed[/]")
    lines = [
        ("job", summary["job_id"]),
        ("provider", summary["provider"]),
        ("GPU", f"{summary['gpu']} (simulated)"),
        ("seconds billed", summary["seconds_billed"]),
        ("deposit", dgpu("deposit")),
        ("paid to provider", dgpu("paid_to_provider")),
        ("platform fee", dgpu("platform_fee")),
        ("refunded to renter", dgpu("refunded_to_renter")),
        ("connection", summary.get("connection") or "-"),
        ("settlement tx", ", ".join(map(str, summary["settlement_signatures"]))),  # type: ignore[call-overload]
        (
            "explorer",
            summary["explorer_url"] or "stopped with the devnet (--demo --keep keeps it up)",
        ),
    ]
    for label, value in lines:
        click.echo(f"{label:20} {value}")
