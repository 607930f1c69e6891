"""``dgpu coordinator``: run the coordinator (offer index, prices, settlement, explorer)."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import replace
from pathlib import Path

import click
from dgpu.cli.output import emit_json, stderr
from dgpu.contracts_client.chain import ChainError, RpcChain
from dgpu.contracts_client.errors import EscrowClientError, ProgramNotDeployed
from dgpu.contracts_client.escrow import EscrowClient
from dgpu.contracts_client.money import ChainEscrow
from dgpu.coordinator.admission import Prober
from dgpu.coordinator.app import create_app
from dgpu.coordinator.config import AdmissionLimits, CoordinatorConfig, RateLimit
from dgpu.coordinator.db import is_database_url
from dgpu.coordinator.proxy import TrustedProxies
from dgpu.coordinator.server import Listen, bind, serve_app
from dgpu.coordinator.settlement import SettlementBackend
from dgpu.pricing import DEFAULT_RATE_CARD, RateCard, load_rate_card
from dgpu.protocol.identity import address_of
from dgpu.protocol.keyfile import load_identity
from solders.pubkey import Pubkey

log = logging.getLogger(__name__)


@click.group("coordinator")
def command() -> None:
    """The coordinator: offer index, reference prices, receipt settlement, web explorer."""


@command.command("serve")
@click.option(
    "--listen", default="127.0.0.1:8000", show_default=True, help="HOST:PORT (port 0: any)."
)
@click.option(
    "--db",
    "db",
    required=True,
    help="SQLite database file, or a postgresql://user:pass@host:port/db URL (several"
    " replicas share one PostgreSQL database); created/migrated at start.",
)
@click.option("--rpc", "rpc_url", help="JSON-RPC URL of the chain to settle on.")
@click.option(
    "--program-id",
    envvar="DGPU_PROGRAM_ID",
    help="The escrow's program id: only its channels are settled, receipts for another are "
    "refused (default: the shipped key's).",
)
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
@click.option(
    "--poll-interval", default=0.4, show_default=True, help="RPC confirmation polling, s."
)
@click.option(
    "--no-intake-check", is_flag=True, help="Do not read channels on chain at receipt intake."
)
@click.option(
    "--replica-id", default="", help="This replica's name in /healthz and /metrics (host:pid)."
)
@click.option(
    "--settler-lease",
    default=15.0,
    show_default=True,
    help="Seconds a dead settler's lease lasts before another replica takes over.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="Reverse proxy address or CIDR whose X-Forwarded-For is believed (repeatable).",
)
@click.option(
    "--no-probe",
    is_flag=True,
    help="Serve offers without first reaching their provider over libp2p (closed deployments"
    " whose providers are all known; /healthz then says probing: false).",
)
@click.option(
    "--psk-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Private-network key of the swarm, for the prober's libp2p node.",
)
@click.option(
    "--probe-timeout", default=10.0, show_default=True, help="Seconds to reach a provider."
)
@click.option(
    "--probe-ttl",
    default=600,
    show_default=True,
    help="Seconds a passed probe admits a provider's offers before it is probed again.",
)
@click.option(
    "--offers-per-key", default=8, show_default=True, help="Live offers one provider key may hold."
)
@click.option(
    "--new-keys-per-ip",
    default=20,
    show_default=True,
    help="New provider keys accepted from one client address per hour.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the listening address as JSON.")
def serve(
    listen: str,
    db: str,
    rpc_url: str | None,
    program_id: str | None,
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
    poll_interval: float,
    no_intake_check: bool,
    replica_id: str,
    settler_lease: float,
    trusted_proxies: tuple[str, ...],
    no_probe: bool,
    psk_file: Path | None,
    probe_timeout: float,
    probe_ttl: int,
    offers_per_key: int,
    new_keys_per_ip: int,
    as_json: bool,
) -> None:
    """Serve the API and the explorer until SIGINT/SIGTERM."""
    if rpc_url is not None and key_path is None:
        raise click.UsageError("--rpc needs --key (the settler key that pays settlements)")
    card: RateCard = load_rate_card(rate_card) if rate_card else DEFAULT_RATE_CARD
    from dgpu.cli.nodeopts import program_id_bytes

    program = program_id_bytes(program_id)
    is_url = is_database_url(db)
    config = CoordinatorConfig(
        db_path=Path("coordinator.sqlite") if is_url else Path(db),
        database_url=db if is_url else None,
        replica_id=replica_id,
        settler_lease_s=settler_lease,
        trusted_proxies=trusted_proxies,
        per_key_limit=RateLimit(key_rate, key_burst),
        per_ip_limit=RateLimit(ip_rate, ip_burst),
        admins=frozenset(admins),
        relays=frozenset(relays),
        settle_every_s=settle_every,
        snapshot_every_s=snapshot_every,
        mint=mint,
        program_id=address_of(program) if program_id is not None else None,
        verify_channels_on_intake=not no_intake_check,
        admission=_admission(probe_timeout, probe_ttl, offers_per_key, new_keys_per_ip),
    )
    try:
        TrustedProxies(trusted_proxies)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trusted-proxy") from exc
    sock = bind(Listen.parse(listen))
    host, port = sock.getsockname()[:2]
    if as_json:
        emit_json(
            {
                "listen": f"{host}:{port}",
                "url": f"http://{host}:{port}",
                "db": config.describe_database(),
            }
        )
    else:
        stderr.print(
            f"coordinator listening on http://{host}:{port} (database {config.describe_database()})"
        )
    if no_probe:
        asyncio.run(_serve(config, card, sock, rpc_url, program, key_path, poll_interval, None))
        return
    # imported here: py-libp2p takes about a second to import
    from dgpu.cli.nodeopts import read_psk
    from dgpu.cli.probing import ProberStartError, running_prober
    from dgpu.node.net.libp2p import Libp2pConfig

    try:
        with running_prober(
            Libp2pConfig(psk=read_psk(psk_file)), timeout_s=probe_timeout
        ) as prober:
            log.info("probing providers from libp2p peer %s", prober.peer_id)
            asyncio.run(
                _serve(config, card, sock, rpc_url, program, key_path, poll_interval, prober)
            )
    except ProberStartError as exc:
        raise click.ClickException(f"{exc} (--no-probe serves without it)") from exc


def _admission(
    timeout_s: float, ttl_s: int, offers_per_key: int, new_keys_per_ip: int
) -> AdmissionLimits:
    for name, value in (
        ("--offers-per-key", offers_per_key),
        ("--new-keys-per-ip", new_keys_per_ip),
    ):
        if value < 1:
            raise click.BadParameter("must be at least 1", param_hint=name)
    if timeout_s <= 0 or ttl_s < 1:
        raise click.BadParameter("must be positive", param_hint="--probe-timeout/--probe-ttl")
    return AdmissionLimits(
        live_offers_per_key=offers_per_key,
        new_keys_per_ip_per_hour=new_keys_per_ip,
        probe_timeout_s=timeout_s,
        probe_ttl_s=ttl_s,
    )


async def _serve(
    config: CoordinatorConfig,
    card: RateCard,
    sock: socket.socket,
    rpc_url: str | None,
    program_id: bytes,
    key_path: Path | None,
    poll_interval: float,
    prober: Prober | None,
) -> None:
    if rpc_url is None:
        await serve_app(create_app(config, card=card, prober=prober), sock)
        return
    assert key_path is not None
    settler = load_identity(key_path)
    async with RpcChain(rpc_url, poll_interval=poll_interval) as chain:
        escrow = EscrowClient(chain, program_id=Pubkey.from_bytes(program_id))
        try:
            await escrow.check_deployed()
        except ProgramNotDeployed as exc:
            raise ProgramNotDeployed(escrow.program_id, f"{exc.reason}, at {rpc_url}") from None
        try:
            await escrow.read_config()
        except (ChainError, EscrowClientError) as exc:
            log.warning("escrow config not readable at %s: %s", rpc_url, exc)
        backend = SettlementBackend(ChainEscrow(escrow), settler)
        config = replace(config, program_id=backend.program_id)
        await serve_app(create_app(config, backend=backend, card=card, prober=prober), sock)
