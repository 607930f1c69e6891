"""``dgpu bootstrap serve``: run a DHT bootstrap peer (optionally relaying offers)."""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click
import trio
from dgpu.cli.output import emit_json, stderr
from dgpu.protocol.identity import Identity
from dgpu.protocol.keyfile import load_identity

if TYPE_CHECKING:
    from dgpu.node.coordinator_client import CoordinatorClient
    from dgpu.node.net.libp2p.config import RelayService
    from trio_typing import TaskStatus


@click.group("bootstrap")
def command() -> None:
    """Bootstrap peers: the DHT servers new nodes join through."""


def _psk(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter("must be hex") from None
    if len(key) != 32:
        raise click.BadParameter("must be 32 bytes (64 hex digits)")
    return key


@command.command("serve")
@click.option(
    "--listen",
    "listen",
    multiple=True,
    default=("/ip4/127.0.0.1/tcp/4001",),
    show_default=True,
    help="Multiaddr to listen on (repeatable).",
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key file of the peer (its peer ID); without it a new one is made at each start.",
)
@click.option("--psk", callback=_psk, help="Private-network key, 64 hex digits.")
@click.option(
    "--index",
    "index_url",
    help="Coordinator URL: relay every valid gossiped offer to its POST /api/v1/offers "
    "(the coordinator must list this peer's address with --relay).",
)
@click.option(
    "--relay/--no-relay",
    default=True,
    show_default=True,
    help="Serve circuit relay v2 (and reachability dial-backs) to nodes behind NATs.",
)
@click.option("--relay-reservations", default=128, show_default=True, help="Slots in all.")
@click.option(
    "--relay-reservations-per-ip", default=4, show_default=True, help="Slots held from one IP."
)
@click.option(
    "--relay-circuits-per-peer", default=8, show_default=True, help="Open circuits per peer."
)
@click.option(
    "--relay-circuits-per-source",
    default=2,
    show_default=True,
    help="Of a peer's circuits, those one source peer (or IP) may hold.",
)
@click.option(
    "--relay-circuit-bytes",
    default=256 * 1024 * 1024,
    show_default=True,
    help="Bytes one circuit may carry (both ways), then it is closed.",
)
@click.option(
    "--relay-circuit-seconds", default=3600, show_default=True, help="Lifetime of a circuit."
)
@click.option("--json", "as_json", is_flag=True, help="Print the address as one JSON line.")
def serve(
    listen: tuple[str, ...],
    key_path: Path | None,
    psk: bytes | None,
    index_url: str | None,
    relay: bool,
    relay_reservations: int,
    relay_reservations_per_ip: int,
    relay_circuits_per_peer: int,
    relay_circuits_per_source: int,
    relay_circuit_bytes: int,
    relay_circuit_seconds: int,
    as_json: bool,
) -> None:
    """Serve the DHT (and a circuit relay) until SIGINT/SIGTERM; print the full multiaddr
    (with /p2p/<peer id>)."""
    from dgpu.node.net.libp2p.config import RelayService

    service = (
        RelayService(
            max_reservations=relay_reservations,
            reservations_per_ip=relay_reservations_per_ip,
            circuits_per_peer=relay_circuits_per_peer,
            circuits_per_source=relay_circuits_per_source,
            circuit_bytes=relay_circuit_bytes,
            circuit_seconds=relay_circuit_seconds,
        )
        if relay
        else None
    )
    if key_path is not None:
        identity = load_identity(key_path)
    else:
        identity = Identity.generate()
        stderr.print("no --key: using a new key; the peer ID changes at every start")
    trio.run(partial(_serve, identity, listen, psk, index_url, service, as_json))


async def _serve(
    identity: Identity,
    listen: tuple[str, ...],
    psk: bytes | None,
    index_url: str | None,
    relay: RelayService | None,
    as_json: bool,
) -> None:
    from dgpu.bootstrap import CoordinatorSink, serve_bootstrap
    from dgpu.node.net.libp2p import Libp2pConfig

    config = Libp2pConfig(listen=listen, psk=psk, relay_service=relay)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        if index_url is None:
            info = await nursery.start(partial(serve_bootstrap, identity, config))
        else:
            client = await nursery.start(_open_client, index_url, identity)
            info = await nursery.start(
                partial(serve_bootstrap, identity, config, sink=CoordinatorSink(client))
            )
        if as_json:
            emit_json(
                {
                    "multiaddr": info.multiaddr,
                    "multiaddrs": list(info.multiaddrs),
                    "peer_id": info.peer_id,
                    "address": identity.address,
                    "relay": relay is not None,
                }
            )
        else:
            click.echo(info.multiaddr)
            stderr.print(f"bootstrap peer {info.peer_id} serving the DHT")


async def _open_client(
    url: str,
    identity: Identity,
    task_status: TaskStatus[CoordinatorClient] = trio.TASK_STATUS_IGNORED,
) -> None:
    from dgpu.node.coordinator_client import CoordinatorClient

    async with CoordinatorClient.open(url, identity) as client:
        task_status.started(client)
        await trio.sleep_forever()


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return
