"""``dgpu provider``: rent out this machine's GPUs, and get paid for it.

dgpu provider start --key K --data-dir D --rpc URL --mint MINT [--gpus "1xRTX 4090"]
                    [--allow-image IMG ...] [--bootstrap MULTIADDR] [--coordinator URL]
                    [--bulk-listen HOST:PORT [--bulk-announce HOST]]   (plain TCP outputs)
dgpu provider settle --key K --data-dir D --rpc URL     # submit receipts yourself
dgpu provider status --data-dir D                        # jobs, receipts, settlements
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import click
import trio
from dgpu.cli import profile as profiles
from dgpu.cli.nodeopts import (
    PROVIDER_LISTEN,
    CliSetupError,
    cancel_on_signals,
    common_network_options,
    data_option,
    ensure_token_account,
    json_option,
    key_option,
    load_key,
    open_coordinator,
    open_escrow,
    open_network,
    open_store,
    parse_address,
    per_second,
    print_rows,
    program_id_bytes,
    program_id_option,
    read_psk,
    run_on_chain,
)
from dgpu.cli.output import emit_json, stderr
from dgpu.cli.profile import PROFILE_ENV, ProviderProfileCommand
from dgpu.node.config import ProviderConfig
from dgpu.node.gpu import BACKEND_CHOICES, detect_backend, parse_gpu_spec
from dgpu.node.net.bulk import BulkServerConfig
from dgpu.node.provider import (
    Provider,
    ProviderExecutor,
    open_bulk_output_host,
    settle_on_chain,
)
from dgpu.node.store import NodeStore
from dgpu.pricing import DEFAULT_RATE_CARD, ProviderPricing, base_units_to_dgpu, load_rate_card
from dgpu.protocol.identity import Identity, address_of
from dgpu.protocol.keyfile import save_identity

log = logging.getLogger(__name__)


@click.group("provider")
def command() -> None:
    """Offer GPUs for rent, run the jobs in containers, get paid per second."""


@command.command("init")
@click.option("--profile", "profile_name", envvar=PROFILE_ENV, help="Profile to write.")
@click.option(
    "--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), help="Key file."
)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--rpc", help="JSON-RPC URL of the chain (the profile's network).")
@click.option("--mint", help="The dGPU mint (the profile's network).")
@click.option("--coordinator", help="Coordinator URL (the profile's network).")
@click.option("--bootstrap", multiple=True, help="Bootstrap multiaddr (repeatable).")
@click.option("--gpus", help='Simulated GPUs when no driver answers, e.g. "1xRTX 4090".')
@click.option("--allow-image", "images", multiple=True, help="Image jobs may use (repeatable).")
@click.option("--price", help="Fixed price, dGPU per GPU-hour.")
@click.option("--executor", type=click.Choice(["docker", "local"]))
@json_option
def init(
    profile_name: str | None,
    key_path: Path | None,
    data_dir: Path | None,
    rpc: str | None,
    mint: str | None,
    coordinator: str | None,
    bootstrap: tuple[str, ...],
    gpus: str | None,
    images: tuple[str, ...],
    price: str | None,
    executor: str | None,
    as_json: bool,
) -> None:
    """Write a provider profile (and a key if there is none) so that ``dgpu provider
    start`` needs no flags."""
    path = profiles.config_path()
    config = profiles.load(path)
    name = profile_name or config.current or "default"
    data_dir = (data_dir or _data_home() / "dgpu" / "provider").absolute()
    key_path = (key_path or data_dir / "key.json").absolute()
    if not key_path.exists():
        key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        save_identity(Identity.generate(), key_path)
    identity = load_key(key_path)
    if mint is not None:
        parse_address(mint, "--mint")
    if price is not None:
        per_second(price, "--price")
    network: dict[str, profiles.Value | None] = {"rpc": rpc, "mint": mint}
    network["coordinator"] = coordinator
    if bootstrap:
        network["bootstrap"] = list(bootstrap)
    provider: dict[str, profiles.Value | None] = {
        "key": str(key_path),
        "data_dir": str(data_dir),
        "gpus": gpus,
        "price": price,
        "executor": executor,
    }
    if images:
        provider["allow_image"] = list(images)
    config = profiles.with_values(config, name, {k: v for k, v in network.items() if v is not None})
    config = profiles.with_values(
        config, name, {k: v for k, v in provider.items() if v is not None}, provider=True
    )
    if config.current is None:
        config = profiles.with_current(config, name)
    profile = config.profiles[name]
    missing = [k for k in ("rpc", "mint") if k not in profile.values and k not in profile.provider]
    if not profile.provider.get("allow_image") and not profile.provider.get("allow_any_image"):
        missing.append("allow_image")
    profiles.save(config)
    info = {
        "path": str(path),
        "profile": name,
        "address": identity.address,
        "key": str(key_path),
        "data_dir": str(data_dir),
        "missing": missing,
    }
    if as_json:
        emit_json(info)
        return
    stderr.print(f"provider profile {name!r} written to {path}; address {identity.address}")
    if missing:
        stderr.print(
            "still needed before `dgpu provider start`: "
            + ", ".join(f"dgpu config set provider.{k} …" for k in missing),
            highlight=False,
        )
    else:
        stderr.print(
            "start it with: dgpu provider start"
            + (f" --profile {name}" if name != config.current else "")
        )


def _data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME", "")
    return Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"


@command.command("start", cls=ProviderProfileCommand)
@key_option
@data_option
@common_network_options
@click.option("--rpc", "rpc_url", required=True, help="JSON-RPC URL of the chain.")
@program_id_option
@click.option("--mint", required=True, help="The dGPU token mint (base58).")
@click.option("--coordinator", "coordinator_url", help="Coordinator URL (offers, settlement).")
@click.option(
    "--gpu-backend",
    type=click.Choice(BACKEND_CHOICES),
    default="auto",
    show_default=True,
    help="auto: Apple Silicon on macOS; elsewhere NVIDIA (NVML), then AMD (AMD SMI, with "
    "dgpu[amd]), then simulated GPUs. A named backend never falls back.",
)
@click.option(
    "--gpus",
    "gpu_spec",
    help='Simulated GPUs, e.g. "2xRTX 4090" (labelled simulated): used when no GPU driver '
    "answers, or always with --gpu-backend simulated.",
)
@click.option("--price", help="Fixed price in dGPU per GPU-hour (default: the rate card).")
@click.option("--floor", help="Least accepted price, dGPU per GPU-hour.")
@click.option("--markup-bps", type=int, default=0, show_default=True, help="Over the card.")
@click.option("--rate-card", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--region", default="local", show_default=True)
@click.option("--allow-image", "images", multiple=True, help="Image allowed to run (repeatable).")
@click.option("--allow-any-image", is_flag=True, help="Run any image (not recommended).")
@click.option("--max-duration", default=24 * 3600, show_default=True, help="Seconds per job.")
@click.option("--interval", default=10, show_default=True, help="Seconds between reports.")
@click.option("--grace", default=30, show_default=True, help="Seconds to wait for a receipt.")
@click.option("--offer-ttl", default=300, show_default=True, help="Offer lifetime, seconds.")
@click.option(
    "--self-settle-after",
    "self_settle_after",
    default=600,
    show_default=True,
    help="Settle a receipt yourself when the coordinator has not within this many seconds "
    "after the job (0: never).",
)
@click.option("--allow-network", is_flag=True, help="Let jobs ask for network access.")
@click.option(
    "--allow-ports",
    is_flag=True,
    help="Tunnel container ports a renter asks for (dgpu run --port) to that renter only, "
    "over its libp2p connection; jobs keep no network (the offer says so).",
)
@click.option(
    "--max-input-mb",
    default=1024,
    show_default=True,
    help="Most input a job may send (dgpu run --input), MiB; 0 takes none.",
)
@click.option(
    "--executor",
    type=click.Choice(["docker", "local"]),
    help="How jobs run [default: local on Apple Silicon, where no GPU reaches a container; "
    "docker elsewhere]. Offers say which.",
)
@click.option("--docker-url", default="unix:///var/run/docker.sock", show_default=True)
@click.option("--cpu-limit", type=float, help="CPUs per job.")
@click.option("--memory-mb", type=int, help="Memory per job, MiB.")
@click.option(
    "--settle/--no-settle",
    "settle_on_finish",
    default=True,
    show_default=True,
    help="Without a coordinator, settle each job's receipt on chain when it ends.",
)
@click.option(
    "--bulk-listen",
    help="Hand job outputs over a plain TCP channel on HOST:PORT instead of libp2p streams "
    "(unencrypted: trusted LANs and benchmarks only). Default: libp2p streams, encrypted "
    "and authenticated, over whatever connection the renter has (relayed included).",
)
@click.option(
    "--bulk-announce",
    help="Host renters dial for outputs (needed when --bulk-listen is 0.0.0.0:PORT).",
)
@json_option
def start(
    key_path: Path,
    data_dir: Path,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    psk_file: Path | None,
    rpc_url: str,
    program_id: str | None,
    mint: str,
    coordinator_url: str | None,
    gpu_backend: str,
    gpu_spec: str | None,
    price: str | None,
    floor: str | None,
    markup_bps: int,
    rate_card: Path | None,
    region: str,
    images: tuple[str, ...],
    allow_any_image: bool,
    max_duration: int,
    interval: int,
    grace: int,
    offer_ttl: int,
    self_settle_after: int,
    allow_network: bool,
    allow_ports: bool,
    max_input_mb: int,
    executor: str | None,
    docker_url: str,
    cpu_limit: float | None,
    memory_mb: int | None,
    settle_on_finish: bool,
    bulk_listen: str | None,
    bulk_announce: str | None,
    as_json: bool,
) -> None:
    """Start the provider: advertise, negotiate, run and meter jobs (Ctrl-C stops)."""
    if not images and not allow_any_image:
        raise CliSetupError("name the images jobs may use (--allow-image), or --allow-any-image")
    identity = load_key(key_path)
    config = ProviderConfig(
        mint=parse_address(mint, "--mint"),
        program_id=program_id_bytes(program_id),
        region=region,
        pricing=ProviderPricing(
            floor_per_gpu_second=per_second(floor, "--floor") if floor else 0,
            markup_bps=markup_bps,
        ),
        rate_card=load_rate_card(rate_card) if rate_card else DEFAULT_RATE_CARD,
        price_per_gpu_second=per_second(price, "--price") if price else None,
        allowed_images=frozenset(images),
        max_duration_s=max_duration,
        interval_s=interval,
        grace_s=grace,
        offer_ttl_s=offer_ttl,
        self_settle_after_s=self_settle_after,
        allow_network=allow_network,
        allow_ports=allow_ports,
        max_input_bytes=max_input_mb * 1024 * 1024,
        settle_on_finish=settle_on_finish,
        cpu_limit=cpu_limit,
        memory_limit_mb=memory_mb,
    )
    if allow_any_image:
        stderr.print("[bold yellow]warning:[/] any image may run on this machine")
    simulated = parse_gpu_spec(gpu_spec) if gpu_spec else None
    # auto: a real driver wins over the simulated spec (which is then only the fallback)
    backend = detect_backend(gpu_backend, simulated)  # type: ignore[arg-type]
    on_apple = any(g.vendor == "apple" and not g.simulated for g in backend.list_gpus())
    if executor is None:
        executor = "local" if on_apple else "docker"
    elif executor == "docker" and on_apple:
        backend.close()
        raise CliSetupError(
            "Apple GPUs do not reach containers on macOS: use --executor local (the default)"
        )
    config = dataclasses.replace(config, executor="local" if executor == "local" else "docker")
    run = functools.partial(
        _serve,
        identity=identity,
        config=config,
        backend=backend,
        data_dir=data_dir,
        key_path=key_path,
        listen=listen,
        bootstrap=bootstrap,
        psk=read_psk(psk_file),
        rpc_url=rpc_url,
        coordinator_url=coordinator_url,
        executor_kind=executor,
        docker_url=docker_url,
        bulk=_bulk_config(bulk_listen, bulk_announce) if bulk_listen else None,
        bulk_announce=bulk_announce,
        as_json=as_json,
    )
    trio.run(run)


def _bulk_config(listen: str, announce: str | None) -> BulkServerConfig:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint="--bulk-listen")
    if host == "0.0.0.0" and announce is None:  # noqa: S104 (a check, not a bind)
        raise CliSetupError("--bulk-listen on every interface: name --bulk-announce HOST")
    return BulkServerConfig(host=host, port=int(port))


@asynccontextmanager
async def _open_executor(
    kind: str, owner: str, data_dir: Path, docker_url: str
) -> AsyncIterator[ProviderExecutor]:
    from dgpu.node.executors import (
        DockerConfig,
        LocalProcessConfig,
        LocalProcessExecutor,
        open_docker_executor,
    )

    workdir = data_dir / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "local":
        yield _LocalExecutor(
            LocalProcessExecutor(LocalProcessConfig(enabled=True, workdir=workdir))
        )
        return
    config = DockerConfig(
        owner=owner,
        base_url=docker_url,
        workdir=workdir,
        watchdog_dir=data_dir / "watchdog",
        watchdog_busybox=_static_busybox(),
    )
    async with open_docker_executor(config) as docker:
        yield docker


def _static_busybox() -> Path | None:
    """The host's busybox if statically linked (it then runs in any image: the container
    watchdog needs no shell of the image's own); None otherwise."""
    found = shutil.which("busybox")
    if found is None:
        return None
    try:
        with open(found, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    # an ELF file with a program interpreter names it near its start
    if not head.startswith(b"\x7fELF") or b"/ld-linux" in head or b"/ld-musl" in head:
        return None
    return Path(found).resolve()


class _LocalExecutor:
    """Local processes die with their provider (one process group each): nothing of a
    previous life is left to sweep."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        return str(self._inner.name)

    def open_job(self, spec: Any) -> Any:
        return self._inner.open_job(spec)

    async def cleanup_orphans(self, owner: str, keep: Collection[str] = frozenset()) -> list[str]:
        await trio.lowlevel.checkpoint()
        return []


async def _serve(
    *,
    identity: Identity,
    config: ProviderConfig,
    backend: Any,
    data_dir: Path,
    key_path: Path,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    psk: bytes | None,
    rpc_url: str,
    coordinator_url: str | None,
    executor_kind: str,
    docker_url: str,
    bulk: BulkServerConfig | None,
    bulk_announce: str | None,
    as_json: bool,
) -> None:
    with open_store(data_dir) as store:
        store.record_key(
            address=identity.address,
            peer_id=identity.peer_id,
            role="provider",
            path=str(key_path),
            now=int(time.time()),
        )
        async with (
            open_escrow(rpc_url, program_id=config.program_id, store=store) as escrow,
            _open_executor(executor_kind, identity.address, data_dir, docker_url) as executor,
            open_network(
                identity,
                listen=listen,
                bootstrap=bootstrap,
                psk=psk,
                default_listen=PROVIDER_LISTEN,
                reachable=True,
            ) as network,
            open_coordinator(coordinator_url, identity) as coordinator,
            open_bulk_output_host(
                identity,
                data_dir / "bulk",
                bulk,
                announce_host=bulk_announce,
                network=network if bulk is None else None,
            ) as outputs,
        ):
            await ensure_token_account(escrow, identity, config.mint)
            provider = Provider(
                identity=identity,
                config=config,
                network=network,
                escrow=escrow,
                executor=executor,
                gpu_backend=backend,
                store=store,
                desk=coordinator,
                outputs=outputs,
                outputs_dir=data_dir / "outputs",
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_on_signals, nursery.cancel_scope)
                await nursery.start(provider.run)
                _announce(provider, as_json)
        backend.close()


def _announce(provider: Provider, as_json: bool) -> None:
    status = provider.status()
    offer = status.offer
    info: dict[str, Any] = {
        "event": "ready",
        "address": status.address,
        "peer_id": status.peer_id,
        "multiaddrs": provider.network.listen_addrs,
        "bulk_addr": provider.outputs.address if provider.outputs is not None else "",
        "gpus": [
            {
                "index": g.index,
                "model": g.model,
                "vram_mb": g.vram_mb,
                "simulated": g.simulated,
                "vendor": g.vendor,
                "name": g.raw_name,
                "driver_version": g.driver_version,
            }
            for g in provider.pool.gpus
        ],
        "offer": None
        if offer is None
        else {
            "gpu_model": offer.gpu_model,
            "gpu_count": offer.gpu_count,
            "price_per_gpu_second": offer.price_per_gpu_second,
            "simulated": offer.simulated,
            "gpu_vendor": offer.gpu_vendor,
            "executor": offer.executor,
            "expires_at": offer.expires_at,
        },
    }
    if as_json:
        emit_json(info)
        return
    stderr.print(f"[green]provider ready[/] {status.address}")
    for addr in info["multiaddrs"]:
        stderr.print(f"  listening on {addr}", highlight=False)
    if info["bulk_addr"]:
        stderr.print(f"  outputs served on {info['bulk_addr']}", highlight=False)
    if offer is not None:
        hourly = base_units_to_dgpu(offer.price_per_gpu_second * 3600)
        label = " (SIMULATED)" if offer.simulated else ""
        stderr.print(
            f"  offering {offer.gpu_count}x {offer.gpu_model}{label} at {hourly} dGPU/GPU-hour"
            f" ({offer.gpu_vendor}, driver {offer.driver_version or '?'},"
            f" jobs run {offer.executor})",
            highlight=False,
        )


@command.command("settle", cls=ProviderProfileCommand)
@key_option
@data_option
@click.option("--rpc", "rpc_url", required=True, help="JSON-RPC URL of the chain.")
@program_id_option
@json_option
def settle(
    key_path: Path, data_dir: Path, rpc_url: str, program_id: str | None, as_json: bool
) -> None:
    """Submit every unsettled receipt on chain yourself (no coordinator needed)."""
    identity = load_key(key_path)
    program = program_id_bytes(program_id)
    rows = run_on_chain(
        data_dir,
        rpc_url,
        "settling receipts on chain...",
        lambda store, escrow: settle_on_chain(
            store, escrow, identity, now=lambda: int(time.time())
        ),
        program_id=program,
        cumulative=lambda r: r.cumulative,
        signature=lambda r: r.signature,
        error=lambda r: r.error,
    )
    print_rows(
        rows,
        key="settlements",
        as_json=as_json,
        empty="nothing to settle",
        line=lambda row: (
            f"{row['status']:8} channel {row['channel']} "
            f"cumulative {row['cumulative']} {row['error']}"
        ),
    )


@command.command("status", cls=ProviderProfileCommand)
@data_option
@click.option(
    "--rpc",
    "rpc_url",
    help="Read what was settled from this chain (the profile's network); without it the "
    "store's last record of it is shown, which can lag the chain.",
)
@program_id_option
@json_option
def status(data_dir: Path, rpc_url: str | None, program_id: str | None, as_json: bool) -> None:
    """Jobs, receipts and settlements: what the store holds, and what the chain paid."""
    if not (data_dir / "node.sqlite").exists():
        raise CliSetupError(f"no node store in {data_dir}")
    with NodeStore.open(data_dir / "node.sqlite") as store:
        program = program_id_bytes(program_id)
        settled = trio.run(_settled_on_chain, store, rpc_url, program) if rpc_url else None
        info = provider_report(store, settled)
    if as_json:
        emit_json(info)
        return
    for job in info["jobs"]:
        stderr.print(
            f"{job['job_id']} {job['state']:10} billed {job['seconds_billed']:>6}s"
            f" receipts {job['paid']} settled {job['settled']} {job['stop_reason']}"
            f" {job['detail']}",
            highlight=False,
        )
    where = "the chain" if info["settled_from"] == "chain" else "the store (no --rpc)"
    stderr.print(f"unsettled receipts: {len(info['unsettled'])} (settlement read from {where})")


async def _settled_on_chain(
    store: NodeStore, rpc_url: str, program_id: bytes
) -> dict[tuple[bytes, int], int]:
    """What the chain paid on each channel opening the store knows (an opening whose
    account is gone or reopened is left out: the chain no longer says)."""
    openings = {(s.channel, s.open_nonce) for s in store.settlements()}
    openings |= {(r.channel, r.open_nonce) for r in store.latest_receipts("provider")}
    ordered = sorted(openings)
    async with open_escrow(rpc_url, program_id=program_id, store=store) as escrow:
        states = await escrow.read_channels([channel for channel, _ in ordered])
    return {
        (channel, nonce): state.settled
        for (channel, nonce), state in zip(ordered, states, strict=True)
        if state is not None and state.open_nonce == nonce
    }


def provider_report(
    store: NodeStore, settled: dict[tuple[bytes, int], int] | None = None
) -> dict[str, Any]:
    """The provider's jobs, unsettled receipts and settlements; ``settled`` (what the
    chain paid per channel opening) replaces the store's record of it where given."""
    recorded = {(s.channel, s.open_nonce): s.paid_on_chain for s in store.settlements()}
    paid = {**recorded, **(settled or {})}
    jobs = []
    for job in store.jobs("provider"):
        latest = store.latest_receipt("provider", job.job_id)
        opening = (job.channel or b"", job.open_nonce or 0)
        jobs.append(
            {
                "job_id": job.job_id.hex(),
                "state": job.state,
                "renter": address_of(job.counterparty),
                "seconds_billed": job.seconds_billed,
                "paid": latest.cumulative if latest else 0,
                "settled": paid.get(opening, 0),
                "stop_reason": job.stop_reason,
                "detail": job.detail,
                "channel": address_of(job.channel) if job.channel else None,
            }
        )
    return {
        "jobs": jobs,
        "settled_from": "store" if settled is None else "chain",
        "unsettled": [
            {"channel": address_of(r.channel), "job_id": r.job_id.hex(), "cumulative": r.cumulative}
            for r in store.latest_receipts("provider")
            if paid.get((r.channel, r.open_nonce), 0) < r.cumulative
        ],
        "settlements": [
            {
                "channel": address_of(s.channel),
                "job_id": s.job_id.hex(),
                "cumulative": s.cumulative,
                "status": (
                    "settled"
                    if paid.get((s.channel, s.open_nonce), 0) >= s.cumulative
                    else s.status
                ),
                "via": s.via,
                "paid_on_chain": paid.get((s.channel, s.open_nonce), s.paid_on_chain),
                "signature": s.signature,
            }
            for s in store.settlements()
        ],
    }
