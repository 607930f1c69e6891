"""``dgpu chain``: the local chain (``serve``), deploying the escrow program to a cluster
(``deploy``), the escrow program's identity (``info``) and its IDL (``idl``)."""

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


@command.command("idl")
@click.option(
    "--anchor",
    is_flag=True,
    help="In the Anchor 0.30+ shape (what @coral-xyz/anchor reads) instead of the shipped one.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
def idl_command(anchor: bool, out: Path | None) -> None:
    """Print the escrow program's IDL as JSON: the shipped legacy one (anchorpy 0.21), or
    with --anchor the Anchor 0.30+ one derived from it (address, discriminators)."""
    import json

    from dgpu.contracts_client.anchor_spec import anchor_spec

    path = Path(escrow_info()["idl_path"])
    try:
        legacy = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ChainError(f"{path}: the shipped IDL is unreadable ({exc})") from None
    text = json.dumps(anchor_spec(legacy) if anchor else legacy, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise ChainError(f"cannot write {out}: {exc.strerror or exc}") from None


@command.command("deploy")
@click.option("--url", "rpc_url", required=True, help="JSON-RPC URL of the cluster.")
@click.option(
    "--keypair",
    "keypair_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Fee payer and upgrade authority (Solana CLI key file).",
)
@click.option(
    "--program-keypair",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The program's address key (default: the shipped one, public: never on mainnet).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def deploy_command(
    rpc_url: str, keypair_path: Path, program_keypair: Path | None, as_json: bool
) -> None:
    """Deploy the shipped escrow .so through the upgradeable loader (buffer, chunked
    writes, deploy with 2x headroom), then verify the deployed bytes against its sha256."""
    import json

    import trio
    from dgpu.contracts_client.chain import RpcChain
    from dgpu.contracts_client.deploy import deploy_escrow
    from dgpu.protocol.keyfile import load_identity
    from solders.keypair import Keypair

    payer = load_identity(keypair_path).to_solders()
    program = None
    if program_keypair is not None:
        try:
            program = Keypair.from_bytes(bytes(json.loads(program_keypair.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            raise ChainError(f"{program_keypair}: not a Solana key file ({exc})") from None

    async def run() -> dict[str, Any]:
        async with RpcChain(rpc_url) as chain:
            return (await deploy_escrow(chain, payer, program=program)).to_json()

    result = trio.run(run)
    if as_json:
        emit_json(result)
        return
    for key in ("program_id", "programdata", "authority", "loader", "sha256"):
        click.echo(f"{key:16} {result[key]}")
    if result["already_deployed"]:
        click.echo("already deployed with these bytes: nothing sent")
    else:
        click.echo(f"{'transactions':16} {len(result['signatures'])}")


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
    help=(
        "The chain's directory: ledger (kept across restarts), mint keys, chain.json "
        "(default: a new temporary dir, a new chain)."
    ),
)
@click.option("--no-escrow", is_flag=True, help="Do not load the escrow program.")
@click.option("--json", "as_json", is_flag=True, help="Print the node description as JSON.")
def serve_command(
    host: str, port: int, state_dir: Path | None, no_escrow: bool, as_json: bool
) -> None:
    """Run a local Solana node over LiteSVM with the escrow and a dGPU mint: JSON-RPC on
    PORT, WebSocket PubSub on PORT+1; the ledger in --state-dir survives restarts."""
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
