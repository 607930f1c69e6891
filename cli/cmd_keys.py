"""``dgpu keys``: create and show node keys (Solana CLI keypair format)."""

from __future__ import annotations

from pathlib import Path

import click
from dgpu.cli.output import emit_json
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity, save_identity


@click.group("keys")
def command() -> None:
    """Node keys: one ed25519 key is both the Solana wallet and the libp2p identity."""


@command.command("new")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def new(path: Path, force: bool, as_json: bool) -> None:
    """Create a new key at PATH (mode 0600)."""
    identity = Identity.generate()
    save_identity(identity, path, force=force)
    _show(identity, path, as_json)


@command.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def show(path: Path, as_json: bool) -> None:
    """Print the Solana address and libp2p peer ID of the key at PATH."""
    _show(load_identity(path), path, as_json)


def _show(identity: Identity, path: Path, as_json: bool) -> None:
    info = {"path": str(path), "address": identity.address, "peer_id": identity.peer_id}
    if as_json:
        emit_json(info)
    else:
        for key, value in info.items():
            click.echo(f"{key:8} {value}")
