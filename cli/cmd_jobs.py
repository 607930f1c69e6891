"""``dgpu jobs``: the renter's jobs, detached or not, in this data dir.

    dgpu jobs ls [--json]
    dgpu jobs logs [-f] JOB          # the job's output (-f: until it ends)
    dgpu jobs attach JOB             # follow it to the end and print the result
    dgpu jobs stop JOB               # cancel it (its node pays for the time used)
    dgpu jobs outputs JOB [--json]   # what it returned, and where
    dgpu jobs resume JOB [--json]    # its node died: take the job back (in this process)

JOB may be any unique prefix of the id. Data dir, key and network from the profile.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import trio
from dgpu.cli import pidfile as pidfiles
from dgpu.cli.jobfiles import JobFiles
from dgpu.cli.nodeopts import (
    CliSetupError,
    cancel_on_signals,
    common_network_options,
    data_option,
    json_option,
    key_option,
    load_key,
    open_escrow,
    open_network,
    open_store,
    parse_address,
    program_id_bytes,
    program_id_option,
    read_psk,
)
from dgpu.cli.output import emit_json, stderr
from dgpu.cli.profile import ProfileCommand

FOLLOW_POLL_S = 0.5


@click.group("jobs")
def command() -> None:
    """Your jobs: list them, follow their logs, stop them, fetch outputs, resume them."""


def _node_alive(data_dir: Path, job_id: str) -> bool:
    record = pidfiles.read(data_dir / "running" / f"{job_id}.pid")
    return record is not None and pidfiles.is_ours(record)


def _resolve(data_dir: Path, prefix: str) -> str:
    with open_store(data_dir) as store:
        ids = [j.job_id.hex() for j in store.jobs("renter")]
    found = [i for i in ids if i.startswith(prefix.lower())]
    if len(found) != 1:
        raise CliSetupError(
            f"no job {prefix!r} in {data_dir}"
            if not found
            else f"{prefix!r} names {len(found)} jobs: say more of the id"
        )
    return found[0]


@command.command("ls", cls=ProfileCommand)
@data_option
@json_option
def ls(data_dir: Path, as_json: bool) -> None:
    """Every job of this data dir, newest first."""
    with open_store(data_dir) as store:
        rows: list[dict[str, Any]] = []
        for job in sorted(store.jobs("renter"), key=lambda j: j.created_at, reverse=True):
            latest = store.latest_receipt("renter", job.job_id)
            rows.append(
                {
                    "job_id": job.job_id.hex(),
                    "state": job.state,
                    "node": "alive" if _node_alive(data_dir, job.job_id.hex()) else "none",
                    "created_at": job.created_at,
                    "signed": latest.cumulative if latest else 0,
                    "deposit": job.deposit or 0,
                    "detail": job.detail,
                }
            )
    if as_json:
        emit_json({"jobs": rows})
        return
    if not rows:
        stderr.print("no job yet")
    for r in rows:
        click.echo(
            f"{r['job_id']}  {r['state']:10} node {r['node']:5}  signed {r['signed']:>14}"
            f"  {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['created_at']))}  {r['detail']}"
        )


def _follow(data_dir: Path, job_id: str, *, follow: bool) -> None:
    files = JobFiles.of(data_dir, job_id)
    offset = 0
    while True:
        try:
            with files.output.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        if not follow or (not chunk and not _node_alive(data_dir, job_id)):
            return
        if not chunk:
            time.sleep(FOLLOW_POLL_S)


@command.command("logs", cls=ProfileCommand)
@data_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job's node ends.")
@click.argument("job")
def logs(data_dir: Path, follow: bool, job: str) -> None:
    """The job's output (stdout and stderr, as they came)."""
    _follow(data_dir, _resolve(data_dir, job), follow=follow)


@command.command("attach", cls=ProfileCommand)
@data_option
@json_option
@click.argument("job")
def attach(data_dir: Path, as_json: bool, job: str) -> None:
    """Follow the job to its end (Ctrl-C leaves it running) and print its result."""
    job_id = _resolve(data_dir, job)
    if not _node_alive(data_dir, job_id):
        stderr.print(f"job {job_id}: no node is running it (dgpu jobs resume {job_id[:12]})")
    _follow(data_dir, job_id, follow=True)
    result = JobFiles.of(data_dir, job_id).read_result()
    if as_json:
        emit_json(result or {"job_id": job_id, "state": "unknown"})
    elif result is not None:
        stderr.print(
            f"job {result['state']}: {result['seconds_billed']}s billed,"
            f" {result['amount_paid']} signed"
        )


@command.command("stop", cls=ProfileCommand)
@data_option
@click.argument("job")
def stop(data_dir: Path, job: str) -> None:
    """Cancel the job: its node tells the provider and pays for the time used."""
    job_id = _resolve(data_dir, job)
    if pidfiles.send(data_dir / "running" / f"{job_id}.pid", signal.SIGINT):
        stderr.print(f"job {job_id}: stop requested")
    else:
        raise CliSetupError(f"job {job_id}: no node is running it")


@command.command("outputs", cls=ProfileCommand)
@data_option
@json_option
@click.argument("job")
def outputs(data_dir: Path, as_json: bool, job: str) -> None:
    """The files the job returned (sha256-checked) and where they are."""
    job_id = _resolve(data_dir, job)
    result = JobFiles.of(data_dir, job_id).read_result()
    if result is None:
        raise CliSetupError(f"job {job_id}: no result yet (it is running, or its node died)")
    files = result.get("outputs", [])
    if as_json:
        emit_json({"job_id": job_id, "outputs": files})
        return
    if not files:
        stderr.print("no outputs")
    for f in files:
        click.echo(f"{f['path']}  {f['size']} bytes  sha256 {f['sha256']}  {f['local'] or ''}")


@command.command("resume", cls=ProfileCommand)
@key_option
@data_option
@common_network_options
@click.option("--rpc", "rpc_url", required=True, help="JSON-RPC URL of the chain.")
@program_id_option
@click.option("--mint", required=True, help="The dGPU token mint (base58).")
@json_option
@click.argument("job")
def resume(
    key_path: Path,
    data_dir: Path,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    psk_file: Path | None,
    rpc_url: str,
    program_id: str | None,
    mint: str,
    as_json: bool,
    job: str,
) -> None:
    """Take back a job whose node died: sign on within the provider's grace period (never
    for time before its start by this machine's clock), or close it at what was signed."""
    from dgpu.cli.cmd_run import Progress, _summary
    from dgpu.node.config import RenterConfig

    job_id = _resolve(data_dir, job)
    if _node_alive(data_dir, job_id):
        raise CliSetupError(f"job {job_id}: its node is alive (dgpu jobs attach {job_id[:12]})")
    files = JobFiles.of(data_dir, job_id)
    offer = files.offer()
    if offer is None:
        raise CliSetupError(f"job {job_id}: {files.meta} is missing: the provider is unknown")
    config = RenterConfig(
        mint=parse_address(mint, "--mint"), program_id=program_id_bytes(program_id)
    )
    main = functools.partial(
        _resume,
        key_path=key_path,
        config=config,
        job_id=bytes.fromhex(job_id),
        offer=offer,
        files=files,
        data_dir=data_dir,
        listen=listen,
        bootstrap=bootstrap,
        psk=read_psk(psk_file),
        rpc_url=rpc_url,
        as_json=as_json,
        progress=Progress,
    )
    result = trio.run(main)
    files.result.write_text(json.dumps(result.to_json()) + "\n")
    if as_json:
        emit_json(result.to_json())
    else:
        _summary(result)
    if not result.ok:
        sys.exit(1)


async def _resume(
    *,
    key_path: Path,
    config: Any,
    job_id: bytes,
    offer: Any,
    files: JobFiles,
    data_dir: Path,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    psk: bytes | None,
    rpc_url: str,
    as_json: bool,
    progress: Any,
) -> Any:
    from dgpu.node.renter import BulkOutputFetcher, Renter, StreamOutputFetcher, resume_job

    identity = load_key(key_path)
    pidfile = data_dir / "running" / f"{job_id.hex()}.pid"
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open_store(data_dir) as store:
        pidfiles.write(pidfile)
        try:
            async with (
                open_escrow(rpc_url, program_id=config.program_id, store=store) as escrow,
                open_network(identity, listen=listen, bootstrap=bootstrap, psk=psk) as network,
            ):
                renter = Renter(
                    identity=identity,
                    config=config,
                    network=network,
                    escrow=escrow,
                    store=store,
                    fetcher=BulkOutputFetcher(identity, fallback=StreamOutputFetcher(network)),
                )
                cancel = trio.Event()
                output_dir = files.output_dir()
                with stderr.status("attaching to the job again…") as status:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            functools.partial(cancel_on_signals, first=cancel),
                            nursery.cancel_scope,
                        )
                        result = await resume_job(
                            renter,
                            job_id,
                            offer=offer,
                            output_dir=output_dir,
                            events=progress(
                                status, as_json=as_json, files=files, output_dir=output_dir
                            ),
                            cancel=cancel,
                        )
                        nursery.cancel_scope.cancel()
        finally:
            pidfile.unlink(missing_ok=True)
    return result
