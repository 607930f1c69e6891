"""``dgpu coordinator``: run the coordinator (offer index, prices, settlement, explorer)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click
from dgpu.cli.output import emit_json, stderr
from dgpu.coordinator.app import create_app
from dgpu.coordinator.config import CoordinatorConfig, RateLimit
from dgpu.coordinator.server import Listen, bind, serve_app
from dgpu.coordinator.settlement import SettlementBackend
from dgpu.pricing import DEFAULT_RATE_CARD, RateCard, load_rate_card

log = logging.getLogger(__name__)


@click.group("coordinator")
def command() -> None:
    """The coordinator: offer index, reference prices, receipt settlement, web explorer."""


@command.command("serve")
@click.option(
    "--listen", default="127.0.0.1:8000", show_default=True, help="HOST:PORT (port 0: any)."
)
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rpc", "rpc_url", help="JSON-RPC URL of the chain to settle on.")
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settler key file (pays settlement fees); needed with --rpc.",
)
@click.option(
    "--settle-every",
    default=60.0,
    show_default=True,
    help="Seconds between settlement rounds (0: on demand only).",
)
@click.option(
    "--snapshot-every",
    default=60.0,
    show_default=True,
    help="Seconds between price snapshots and score refreshes.",
)
@click.option(
    "--admin",
    "admins",
    multiple=True,
    help="Address allowed to run settlement on demand (repeatable).",
)
@click.option(
    "--relay", "relays", multiple=True, help="Address of a trusted offer relay (repeatable)."
)
@click.option("--mint", help="Only index offers in this mint (base58).")
@click.option(
    "--rate-card",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Rate card TOML.",
)
@click.option(
    "--key-rate", default=5.0, show_default=True, help="Signed writes per second per signer."
)
@click.option("--key-burst", default=50, show_default=True)
@click.option(
    "--ip-rate", default=50.0, show_default=True, help="API requests per second per client address."
)
@click.option("--ip-burst", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the listening address as JSON.")
def serve(
    listen: str,
    db_path: Path,
    rpc_url: str | None,
    key_path: Path | None,
    settle_every: float,
    snapshot_every: float,
    admins: tuple[str, ...],
    relays: tuple[str, ...],
    mint: str | None,
    rate_card: Path | None,
    key_rate: float,
    key_burst: int,
    ip_rate: float,
    ip_burst: int,
    as_json: bool,
) -> None:
    """Serve the API and the explorer until SIGINT/SIGTERM."""
    card: RateCard = load_rate_card(rate_card) if rate_card else DEFAULT_RATE_CARD
    config = CoordinatorConfig(
        db_path=db_path,
        per_key_limit=RateLimit(key_rate, key_burst),
        per_ip_limit=RateLimit(ip_rate, ip_burst),
        admins=frozenset(admins),
        relays=frozenset(relays),
        settle_every_s=settle_every,
        snapshot_every_s=snapshot_every,
        mint=mint,
    )
    sock = bind(Listen.parse(listen))
    host, port = sock.getsockname()[:2]
    if as_json:
        emit_json({"listen": f"{host}:{port}", "url": f"http://{host}:{port}", "db": str(db_path)})
    else:
        stderr.print(f"coordinator listening on http://{host}:{port} (database {db_path})")
    asyncio.run(_serve(config, card, sock, rpc_url, key_path))


async def _serve(
    config: CoordinatorConfig,
    card: RateCard,
    sock: object,
    rpc_url: str | None,
    key_path: Path | None,
) -> None:
    import socket

    assert isinstance(sock, socket.socket)
    backend: SettlementBackend | None = None
    if rpc_url is not None:
        raise click.UsageError("--rpc: settlement through the escrow client is not wired yet")
    app = create_app(config, backend=backend, card=card)
    await serve_app(app, sock)
