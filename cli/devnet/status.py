"""The live status panel of a running devnet (read from the coordinator and the children)."""

from __future__ import annotations

import shlex
from typing import Any

import httpx
from dgpu.cli.devnet.parts import Running
from dgpu.cli.devnet.supervisor import Child, PartState, Supervisor
from dgpu.pricing import base_units_to_dgpu
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def snapshot(running: Running) -> dict[str, Any]:
    """Offers, providers and settlements as the coordinator sees them (empty if down)."""
    try:
        with httpx.Client(base_url=running.coordinator_url, timeout=3) as http:
            offers = http.get("/api/v1/offers", params={"limit": "1"}).json()
            settlements = http.get("/api/v1/settlements", params={"limit": "1"}).json()
            providers = http.get("/api/v1/providers", params={"limit": "1"}).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {"offers": offers, "settlements": settlements, "providers": providers}


def _state(child: Child) -> str:
    if child.state is PartState.WAITING:
        return "[red]down[/], restarting soon"
    if child.state is PartState.STARTING:
        return "[yellow]restarting[/]"
    return "[green]up[/]" if child.alive() else "[red]down[/]"


def render(sup: Supervisor, running: Running, run_command: list[str]) -> Panel:
    nodes = Table.grid(padding=(0, 2))
    nodes.add_column()
    nodes.add_column()
    nodes.add_column()
    for child in sup.children:
        nodes.add_row(child.name, _state(child), Text(child.note, style="dim"))
    data = snapshot(running)
    figures = Table.grid(padding=(0, 2))
    figures.add_column()
    figures.add_column()
    if data:
        settled = data["settlements"].get("settled_total", 0)
        figures.add_row("offers live", str(data["offers"].get("total", "?")))
        figures.add_row("providers", str(data["providers"].get("total", "?")))
        figures.add_row("settlement batches", str(data["settlements"].get("total", "?")))
        figures.add_row("receipts pending", str(data["settlements"].get("pending_channels", "?")))
        figures.add_row("settled", f"{base_units_to_dgpu(int(settled))} dGPU")
    else:
        figures.add_row("coordinator", "[red]not answering[/]")
    command = Text(shlex.join(run_command), style="cyan")
    return Panel(
        Group(
            Text(f"explorer  {running.explorer_url}", style="bold"),
            Text(f"chain     {running.rpc_url}"),
            Text(f"bootstrap {running.bootstrap}"),
            Text(""),
            nodes,
            Text(""),
            figures,
            Text("\ntry a job from another terminal:"),
            command,
            Text("\nA part that dies is restarted on the same ports with the same state."),
            Text("Ctrl-C stops every process and container the devnet started."),
        ),
        title="dgpu devnet",
    )
