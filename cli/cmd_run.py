"""``dgpu run``: rent a GPU, run a container on it, pay per second.

    dgpu run --key K --data-dir D --rpc URL --mint MINT --gpu "RTX 4090" --image IMG \\
             --duration 600 --max-price 0.80 [--bootstrap MULTIADDR | --coordinator URL] \\
             [--output-dir OUT] [--json] -- sh -c 'nvidia-smi; python train.py'
    dgpu run cancel --data-dir D [JOB_ID]      # politely stop a running ``dgpu run``
    dgpu run reclaim --key K --data-dir D --rpc URL   # get unspent deposits back

Progress goes to stderr; the job's stdout to stdout (to stderr with ``--json``, whose one
JSON object on stdout is the result: job id, provider, seconds billed, amount paid,
outputs). Ctrl-C (or ``dgpu run cancel``) cancels the job and pays for the time used.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import trio
from dgpu.cli import pidfile as pidfiles
from dgpu.cli.detach import start_detached
from dgpu.cli.jobfiles import JobFiles
from dgpu.cli.nodeopts import (
    CliSetupError,
    cancel_on_signals,
    common_network_options,
    data_option,
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
from dgpu.cli.profile import ProfileCommand
from dgpu.contracts_client.money import Escrow
from dgpu.node.config import RenterConfig
from dgpu.node.renter import (
    Agreed,
    BulkOutputFetcher,
    CoordinatorIndex,
    Declined,
    Ended,
    Estimated,
    EventSink,
    Forward,
    Funded,
    InputsSent,
    InputUploader,
    JobResult,
    LogReceived,
    OfferQuery,
    OffersFound,
    OutputFetched,
    PortsForwarded,
    ReceiptSigned,
    Renter,
    RenterEvent,
    ReportRefused,
    Started,
    StreamOutputFetcher,
    TunnelError,
    reclaim_channels,
    scan_inputs,
)
from dgpu.pricing import base_units_to_dgpu
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import address_of
from dgpu.protocol.messages import Offer
from dgpu.protocol.negotiation import JobSpec, new_job_id
from rich.status import Status

log = logging.getLogger(__name__)


class RunGroup(click.Group):
    """``dgpu run [OPTIONS] -- CMD`` runs a job; ``dgpu run cancel|reclaim`` are commands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["job", *args]
        return super().parse_args(ctx, args)


@click.group("run", cls=RunGroup)
def command() -> None:
    """Run a container on a rented GPU (options, then -- and the command), or manage jobs."""


def _dgpu(amount: int) -> str:
    return f"{base_units_to_dgpu(amount)} dGPU"


class Progress:
    """Renders renter events: a spinner and lines on stderr, the job's stdout on stdout."""

    def __init__(
        self,
        status: Status,
        *,
        as_json: bool,
        files: JobFiles | None = None,
        output_dir: Path | None = None,
    ) -> None:
        self.status = status
        self.as_json = as_json
        self.files = files
        self.output_dir = output_dir
        self.offer: Offer | None = None

    def __call__(self, event: RenterEvent) -> None:
        if self.files is not None:
            self._keep(self.files, event)
        if isinstance(event, OffersFound):
            found = event.found
            stderr.print(f"{found.matched} matching offers ({found.source}), {found.seen} seen")
        elif isinstance(event, Estimated):
            e = event.estimate
            label = " SIMULATED" if event.offer.simulated else ""
            stderr.print(
                f"offer {address_of(event.offer.provider)[:8]}… {e.gpu_count}x {e.model}{label}:"
                f" at most {_dgpu(e.total)} for {e.duration_seconds}s"
                f" (provider {_dgpu(e.provider_net)}, fee {_dgpu(e.fee)})",
                highlight=False,
            )
            self.status.update("negotiating…")
        elif isinstance(event, Declined):
            stderr.print(f"[yellow]declined[/] ({event.code}): {event.message}", highlight=False)
        elif isinstance(event, Agreed):
            self.status.update("agreed; funding the escrow channel…")
        elif isinstance(event, Funded):
            stderr.print(
                f"channel {address_of(event.channel.address)} funded with"
                f" {_dgpu(event.channel.deposit)}",
                highlight=False,
            )
            self.status.update("waiting for the job to start…")
        elif isinstance(event, Started):
            self.status.update("running")
        elif isinstance(event, LogReceived):
            out = sys.stderr if self.as_json or event.stream == "stderr" else sys.stdout
            out.write(event.data.decode("utf-8", errors="replace"))
            out.flush()
        elif isinstance(event, ReceiptSigned):
            self.status.update(f"running: {event.elapsed_s}s, paid {_dgpu(event.cumulative)}")
        elif isinstance(event, ReportRefused):
            stderr.print(f"[bold red]refused to pay:[/] {event.reason}", highlight=False)
        elif isinstance(event, Ended):
            self.status.update(f"job {event.state}; collecting outputs…")
        elif isinstance(event, OutputFetched):
            stderr.print(f"fetched {event.path} ({event.size} bytes, sha256 verified)")
        elif isinstance(event, InputsSent):
            resumed = f", {event.resumed} resumed" if event.resumed else ""
            stderr.print(f"sent {event.files} inputs ({event.bytes} bytes{resumed}), unbilled")
        elif isinstance(event, PortsForwarded):
            for local, remote in event.ports:
                stderr.print(f"port {remote} of the job: 127.0.0.1:{local}", highlight=False)

    def _keep(self, files: JobFiles, event: RenterEvent) -> None:
        """What ``dgpu jobs`` and a restarted node read: the offer once funded, the logs."""
        if isinstance(event, Estimated):
            self.offer = event.offer
        elif isinstance(event, Funded) and self.offer is not None:
            files.write_meta(self.offer, self.output_dir)
        elif isinstance(event, LogReceived):
            files.root.mkdir(parents=True, exist_ok=True)
            with files.output.open("ab") as out:
                out.write(event.data)


def _env(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        pairs.append((name, value))
    return tuple(pairs)


@command.command("job", cls=ProfileCommand, context_settings={"ignore_unknown_options": False})
@key_option
@data_option
@common_network_options
@click.option("--rpc", "rpc_url", required=True, help="JSON-RPC URL of the chain.")
@program_id_option
@click.option("--mint", required=True, help="The dGPU token mint (base58).")
@click.option("--coordinator", "coordinator_url", help="Find offers through this coordinator.")
@click.option(
    "--p2p",
    is_flag=True,
    help="Find offers peer to peer (offer books, then the DHT) even with a coordinator.",
)
@click.option("--gpu", "gpu_model", required=True, help='GPU model, e.g. "RTX 4090".')
@click.option("--count", default=1, show_default=True, help="GPUs.")
@click.option("--min-vram", default=0, show_default=True, help="Least VRAM per GPU, MiB.")
@click.option("--region", help="Only providers in this region.")
@click.option(
    "--vendor",
    type=click.Choice(["nvidia", "amd", "apple"]),
    help="Only GPUs whose driver reported this vendor.",
)
@click.option(
    "--executor",
    type=click.Choice(["docker", "local"]),
    help="Only providers that run jobs this way (Apple Silicon providers run local processes).",
)
@click.option(
    "--verified",
    is_flag=True,
    help="Only providers with a recent verified probe verdict (needs --coordinator; see "
    "dgpu probe).",
)
@click.option("--max-price", required=True, help="Most you pay, dGPU per GPU-hour.")
@click.option("--image", required=True, help="Container image to run.")
@click.option("--duration", default=600, show_default=True, help="Most seconds the job may run.")
@click.option("--env", "env_items", multiple=True, help="NAME=VALUE for the job (repeatable).")
@click.option("--network", "with_network", is_flag=True, help="Ask for network access.")
@click.option(
    "--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Save outputs here."
)
@click.option("--out-path", default="/out", show_default=True, help="Outputs dir in the job.")
@click.option("--max-output-mb", default=64, show_default=True, help="Most output, MiB.")
@click.option(
    "--input",
    "input_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A file or folder to send, mounted read-only at /in/NAME (repeatable). Sent before "
    "the channel is funded: transfer time is not billed.",
)
@click.option(
    "--port",
    "port_items",
    multiple=True,
    help="Reach the container's port PORT (or REMOTE, as LOCAL:REMOTE) at 127.0.0.1:PORT "
    "(LOCAL) while the job runs (repeatable; providers that allow ports only).",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Print the job id once funded and leave a node process metering and paying "
    "(see dgpu jobs).",
)
@click.option("--job-id", "job_id_hex", hidden=True, help="The job id (a detached node's).")
@json_option
@click.argument("job_command", nargs=-1, required=True)
def job(
    key_path: Path,
    data_dir: Path,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    psk_file: Path | None,
    rpc_url: str,
    program_id: str | None,
    mint: str,
    coordinator_url: str | None,
    p2p: bool,
    gpu_model: str,
    count: int,
    min_vram: int,
    region: str | None,
    vendor: str | None,
    executor: str | None,
    verified: bool,
    max_price: str,
    image: str,
    duration: int,
    env_items: tuple[str, ...],
    with_network: bool,
    output_dir: Path | None,
    out_path: str,
    max_output_mb: int,
    input_paths: tuple[Path, ...],
    port_items: tuple[str, ...],
    detach: bool,
    job_id_hex: str | None,
    as_json: bool,
    job_command: tuple[str, ...],
) -> None:
    """Run JOB_COMMAND (after --) in IMAGE on a rented GPU."""
    if detach:
        start_detached(data_dir, as_json=as_json)
        return
    if verified and (coordinator_url is None or p2p):
        raise click.UsageError(
            "--verified needs --coordinator (and no --p2p): the coordinator keeps the verdicts"
        )
    try:
        forwards = tuple(Forward.parse(item) for item in port_items)
    except TunnelError as exc:
        raise click.BadParameter(str(exc), param_hint="--port") from exc
    identity = load_key(key_path)
    config = RenterConfig(
        mint=parse_address(mint, "--mint"), program_id=program_id_bytes(program_id)
    )
    price = per_second(max_price, "--max-price")
    spec = JobSpec(
        image=image,
        command=job_command,
        gpu_model=gpu_model,
        gpu_count=count,
        max_duration_s=duration,
        max_price_per_gpu_second=price,
        env=_env(env_items),
        output_dir=out_path if output_dir is not None else "",
        max_output_bytes=max_output_mb * 1024 * 1024 if output_dir is not None else 0,
        network=with_network,
    )
    query = OfferQuery(
        gpu_model=gpu_model,
        count=count,
        min_vram_mb=min_vram,
        region=region,
        max_price_per_gpu_second=price,
        duration_s=duration,
        mint=config.mint,
        vendor=vendor,
        executor=executor,
        verified=verified,
    )
    job_id = bytes.fromhex(job_id_hex) if job_id_hex else new_job_id(os.urandom(32))
    searches: list[OffersFound] = []

    def keep_search(event: RenterEvent) -> None:
        if isinstance(event, OffersFound):
            searches.append(event)

    main = functools.partial(
        _run,
        identity_path=key_path,
        config=config,
        spec=spec,
        query=query,
        job_id=job_id,
        data_dir=data_dir,
        listen=listen,
        bootstrap=bootstrap,
        psk=read_psk(psk_file),
        rpc_url=rpc_url,
        coordinator_url=coordinator_url,
        p2p=p2p,
        output_dir=output_dir,
        as_json=as_json,
        input_paths=input_paths,
        forwards=forwards,
        tap=keep_search,
    )
    del identity
    result, connection = trio.run(main)
    if as_json:
        search = searches[-1].found.to_json() if searches else None
        emit_json({**result.to_json(), "connection": connection, "search": search})
    else:
        _summary(result)
    if not result.ok:
        sys.exit(1)


async def _run(
    *,
    identity_path: Path,
    config: RenterConfig,
    spec: JobSpec,
    query: OfferQuery,
    job_id: bytes,
    data_dir: Path,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    psk: bytes | None,
    rpc_url: str,
    coordinator_url: str | None,
    p2p: bool,
    output_dir: Path | None,
    as_json: bool,
    input_paths: tuple[Path, ...] = (),
    forwards: tuple[Forward, ...] = (),
    offers: Sequence[Offer] | None = None,
    tap: EventSink | None = None,
) -> tuple[JobResult, str]:
    """Run one job (``offers``: on these, in order, instead of searching); ``tap`` sees
    every event after the progress display."""
    identity = load_key(identity_path)
    running = data_dir / "running"
    running.mkdir(parents=True, exist_ok=True)
    pidfile = running / f"{job_id.hex()}.pid"
    close_stale_jobs(data_dir)
    with open_store(data_dir) as store:
        store.record_key(
            address=identity.address,
            peer_id=identity.peer_id,
            role="renter",
            path=str(identity_path),
            now=int(time.time()),
        )
        pidfiles.write(pidfile)
        try:
            async with (
                open_escrow(rpc_url, program_id=config.program_id, store=store) as escrow,
                open_network(identity, listen=listen, bootstrap=bootstrap, psk=psk) as network,
                open_coordinator(coordinator_url, identity) as coordinator,
            ):
                # outputs over the provider's bulk channel (libp2p streams, or TCP where
                # the provider serves it so); the job's stream when it names none
                fetcher = BulkOutputFetcher(
                    identity,
                    fallback=StreamOutputFetcher(network),
                    open_stream=network.open_raw_stream,
                    connection_kind=network.connection_kind,
                )
                cancel = trio.Event()
                with stderr.status("finding offers…") as status:
                    inputs = None
                    if input_paths:
                        status.update("hashing inputs…")
                        inputs = await scan_inputs(input_paths)

                    def uploaded(done: int, total: int) -> None:
                        status.update(f"sending inputs: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

                    renter = Renter(
                        identity=identity,
                        config=config,
                        network=network,
                        escrow=escrow,
                        store=store,
                        index=CoordinatorIndex(coordinator) if coordinator else None,
                        fetcher=fetcher,
                        uploader=InputUploader(
                            identity, open_stream=network.open_raw_stream, progress=uploaded
                        ),
                    )
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            functools.partial(cancel_on_signals, first=cancel),
                            nursery.cancel_scope,
                        )
                        progress = Progress(
                            status,
                            as_json=as_json,
                            files=JobFiles.of(data_dir, job_id.hex()),
                            output_dir=output_dir,
                        )
                        result = await renter.run_job(
                            spec,
                            query=query,
                            offers=offers,
                            p2p=p2p,
                            output_dir=output_dir,
                            events=progress if tap is None else _both(progress, tap),
                            cancel=cancel,
                            job_id=job_id,
                            inputs=inputs,
                            ports=forwards,
                        )
                        nursery.cancel_scope.cancel()
                _report_transfer(fetcher)
                wait_s = SETTLE_WAIT_S if coordinator_url is None else 0.0
                result = dataclasses.replace(
                    result, paid_on_chain=await paid_on_chain(escrow, result, wait_s=wait_s)
                )
        finally:
            pidfile.unlink(missing_ok=True)
    return result, fetcher.stats.connection


def _both(first: EventSink, second: EventSink) -> EventSink:
    def sink(event: RenterEvent) -> None:
        first(event)
        second(event)

    return sink


SETTLE_WAIT_S = 10.0
"""Without a coordinator the provider settles what it acknowledged as the job ends: how
long ``dgpu run`` waits to see it on chain before it reports what the chain paid so far."""


async def paid_on_chain(escrow: Escrow, result: JobResult, *, wait_s: float) -> int | None:
    """What the chain has paid from the job's channel, waiting up to ``wait_s`` for it to
    reach what the provider acknowledged; None when the chain cannot tell."""
    deadline = trio.current_time() + wait_s
    while True:
        try:
            state = await escrow.read_channel(result.channel)
        except DgpuError as exc:
            log.warning("cannot read the job's channel: %s", exc)
            return None
        if state is None or state.open_nonce != result.open_nonce:
            return None  # closed (or reopened): the chain no longer says what this job got
        if state.settled >= result.acknowledged or trio.current_time() >= deadline:
            return state.settled
        await trio.sleep(0.25)


def _report_transfer(fetcher: BulkOutputFetcher) -> None:
    stats = fetcher.stats
    if stats.files:
        rate = stats.bytes / stats.seconds / 1e6 if stats.seconds > 0 else 0.0
        resumed = f", {stats.resumed} resumed" if stats.resumed else ""
        stderr.print(
            f"outputs: {_files(stats.files)}, {stats.bytes} bytes over the bulk channel"
            f" in {stats.seconds:.2f}s ({rate:.1f} MB/s{resumed}; {stats.connection} connection)",
            highlight=False,
        )
    if stats.via_fallback:
        stderr.print(f"outputs: {_files(stats.via_fallback)} over libp2p (no bulk address)")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _summary(result: JobResult) -> None:
    colour = "green" if result.ok else "red"
    stderr.print(
        f"[{colour}]job {result.state}[/] (exit {result.exit_code}) {result.detail}",
        highlight=False,
    )
    # Paid is what the chain says; what the provider acknowledged it holds durably and
    # settles; what we signed it *may* settle. Say the first, and the others where they
    # differ (dgpu run reclaim shows the rest).
    paid = result.paid_on_chain
    stderr.print(
        f"billed {result.seconds_billed}s x {result.gpu_count} GPU at"
        f" {result.price_per_gpu_second} per GPU-second: "
        + (f"paid {_dgpu(paid)} on chain" if paid is not None else "the chain did not say")
        + f" of {_dgpu(result.deposit)} deposited",
        highlight=False,
    )
    if paid is None or result.acknowledged != paid:
        stderr.print(
            f"the provider acknowledged {_dgpu(result.acknowledged)} (it settles that; the"
            " chain has the final word)",
            highlight=False,
        )
    if result.amount_paid != result.acknowledged:
        stderr.print(
            f"signed {_dgpu(result.amount_paid)}: the provider may settle up to that",
            highlight=False,
        )
    stderr.print(
        f"the rest can be reclaimed after {time.ctime(result.reclaimable_at)}"
        " with: dgpu run reclaim",
        highlight=False,
    )
    for output in result.outputs:
        where = f" -> {output.local}" if output.local else " (not fetched)"
        stderr.print(f"output {output.path} {output.size} bytes sha256 {output.sha256}{where}")
    for dispute in result.disputes:
        stderr.print(f"[bold red]dispute:[/] {dispute}", highlight=False)


@command.command("cancel", cls=ProfileCommand)
@data_option
@click.argument("job_id", required=False)
def cancel(data_dir: Path, job_id: str | None) -> None:
    """Cancel a running ``dgpu run`` of this data dir (all of them without JOB_ID)."""
    found = sorted((data_dir / "running").glob("*.pid"))
    if job_id is not None:
        found = [p for p in found if p.stem == job_id]
    if not found:
        raise CliSetupError("no running job to cancel")
    for path in found:
        # only the very process that wrote the file: its PID may belong to another now
        if pidfiles.send(path, signal.SIGINT):
            stderr.print(f"job {path.stem}: cancel requested")
        else:
            stderr.print(f"job {path.stem}: not running any more")
    close_stale_jobs(data_dir)


def close_stale_jobs(data_dir: Path) -> list[str]:
    """Close the jobs of ``dgpu run`` processes that ended without closing them (killed):
    their PID file is stale; their job is marked abandoned (the channel stays, and
    ``dgpu run reclaim`` takes back what it holds). Returns the job ids closed."""
    running = data_dir / "running"
    stale = [
        p
        for p in sorted(running.glob("*.pid"))
        if (record := pidfiles.read(p)) is None or not pidfiles.is_ours(record)
    ]
    if not stale:
        return []
    closed: list[str] = []
    with open_store(data_dir) as store:
        for path in stale:
            try:
                job = store.get_job(bytes.fromhex(path.stem), "renter")
            except ValueError:
                job = None  # not a job id: not ours to read
            if job is not None and job.live:
                store.update_job(
                    job.job_id,
                    "renter",
                    now=int(time.time()),
                    state="abandoned",
                    ended_at=int(time.time()),
                    detail="the dgpu run process ended without closing the job (killed?)",
                )
                closed.append(path.stem)
                stderr.print(f"job {path.stem}: its dgpu run ended without closing it; abandoned")
            path.unlink(missing_ok=True)
    return closed


@command.command("reclaim", cls=ProfileCommand)
@key_option
@data_option
@click.option("--rpc", "rpc_url", required=True, help="JSON-RPC URL of the chain.")
@program_id_option
@click.option("--channel", help="Only this channel (base58).")
@json_option
def reclaim(
    key_path: Path,
    data_dir: Path,
    rpc_url: str,
    program_id: str | None,
    channel: str | None,
    as_json: bool,
) -> None:
    """Take back what is left in your channels once they expired."""
    identity = load_key(key_path)
    only = parse_address(channel, "--channel") if channel else None
    program = program_id_bytes(program_id)
    rows = run_on_chain(
        data_dir,
        rpc_url,
        "reclaiming…",
        lambda store, escrow: reclaim_channels(
            store, escrow, identity, now=lambda: int(time.time()), channel=only
        ),
        program_id=program,
        amount=lambda r: r.amount,
        signature=lambda r: r.signature,
        reclaimable_at=lambda r: r.reclaimable_at,
    )

    def line(row: dict[str, Any]) -> str:
        if row["status"] == "closed":  # nothing was reclaimed: the account is gone
            return f"{row['status']:9} {row['channel']} (no longer on chain: closed earlier)"
        when = "" if row["status"] != "not_yet" else f" (from {time.ctime(row['reclaimable_at'])})"
        return f"{row['status']:9} {row['channel']} {_dgpu(row['amount'])}{when}"

    print_rows(rows, key="channels", as_json=as_json, empty="no open channel", line=line)
