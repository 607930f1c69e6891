"""``dgpu chain``: the local chain (``serve``) and the escrow program's identity (``info``)."""

from __future__ import annotations

import asyncio
import importlib
import signal
import tempfile
from pathlib import Path
from typing import Any

import click
from dgpu.cli.output import emit_json, stderr
from dgpu.contracts_client.chain import ChainError


@click.group("chain")
def command() -> None:
    """The Solana side: a local JSON-RPC chain and the escrow program."""


def escrow_info() -> dict[str, Any]:
    """``program_id``, ``so_path``, ``so_sha256`` and ``idl_path`` from :mod:`dgpu.contracts`."""
    try:
        escrow = importlib.import_module("dgpu.contracts")
        return {
            "program_id": str(escrow.PROGRAM_ID),
            "so_path": str(escrow.so_path()),
            "so_sha256": str(escrow.so_sha256()),
            "idl_path": str(escrow.idl_path()),
        }
    except (ImportError, AttributeError, OSError) as exc:
        raise ChainError(f"the escrow package (dgpu.contracts) is not usable: {exc}") from None


@command.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def info(as_json: bool) -> None:
    """Print the escrow program id, its .so (path and sha256) and its IDL."""
    facts = escrow_info()
    if as_json:
        emit_json(facts)
    else:
        for key, value in facts.items():
            click.echo(f"{key:10} {value}")


@command.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8899,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0 picks a free one).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the mint keys and chain.json live (default: a new temporary dir).",
)
@click.option("--no-escrow", is_flag=True, help="Do not load the escrow program.")
@click.option("--json", "as_json", is_flag=True, help="Print the node description as JSON.")
def serve_command(
    host: str, port: int, state_dir: Path | None, no_escrow: bool, as_json: bool
) -> None:
    """Run a local Solana JSON-RPC node over LiteSVM with the escrow and a dGPU mint."""
    from dgpu.contracts_client.rpc_server import ServeConfig, ServerInfo, serve

    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="dgpu-chain-"))
    config = ServeConfig(state_dir=state_dir, host=host, port=port, escrow=not no_escrow)

    def on_ready(node: ServerInfo) -> None:
        if as_json:
            emit_json(node.to_json())
            return
        for key, value in node.to_json().items():
            click.echo(f"{key:22} {value}")
        stderr.print("[green]local chain ready[/] (Ctrl-C to stop)", highlight=False)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(config, on_ready=on_ready, shutdown_trigger=stop.wait)

    asyncio.run(run())
