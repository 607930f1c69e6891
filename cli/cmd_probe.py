"""``dgpu probe``: check a provider's GPU claims with a short, paid probe job.

    dgpu probe --key K --data-dir D --rpc URL --mint MINT --coordinator URL \\
               --image IMG [--duration 120] [--max-price 5.0] [--json] PROVIDER_OR_OFFER

The probe runs :func:`dgpu.node.renter.probe.probe_command` on the provider's current offer
(or the offer named by its 32-hex id), paid per second like any job. Its report — the GPUs
the job saw and the throughput of a known workload — is judged against the offer and the
model's expected band: ``verified``, ``mismatch`` (what contradicts is named),
``simulated`` (simulated GPUs never pass) or ``inconclusive``. The verdict is signed with
the renter's key and handed to the coordinator (``--no-report`` keeps it local), where it
feeds the provider's score, the explorer and ``dgpu run --verified``.

Use an image with PyTorch (CUDA or ROCm) for the workload to run; an image without it
still checks the devices, and the verdict is then at best ``inconclusive``.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Final

import click
import trio
from dgpu.cli.cmd_run import _run
from dgpu.cli.nodeopts import (
    common_network_options,
    data_option,
    json_option,
    key_option,
    load_key,
    open_coordinator,
    parse_address,
    per_second,
    program_id_bytes,
    program_id_option,
    read_psk,
)
from dgpu.cli.output import emit_json, stderr
from dgpu.cli.profile import ProfileCommand
from dgpu.node.config import RenterConfig
from dgpu.node.coordinator_client import CoordinatorClient, CoordinatorClientError
from dgpu.node.renter import JobResult, LogReceived, OfferQuery, RenterEvent
from dgpu.node.renter.probe import (
    Judgement,
    ProbeError,
    ProbeReading,
    judge,
    parse_probe_output,
    probe_command,
    sign_verdict,
    stdout_of,
)
from dgpu.protocol.identity import Identity, address_of
from dgpu.protocol.messages import Offer, ProbeVerdict
from dgpu.protocol.negotiation import JobSpec, new_job_id

_OFFER_ID: Final = re.compile(r"[0-9a-fA-F]{32}")
REPORT_WAIT_S: Final = 60.0
"""How long to keep offering the verdict while the coordinator does not know the job yet
(the provider hands in its receipts as the job ends)."""


async def find_target(client: CoordinatorClient, target: str) -> Offer:
    """The offer named by ``target``: an offer id, or a provider's newest live offer."""
    if _OFFER_ID.fullmatch(target):
        return await client.offer(bytes.fromhex(target))
    parse_address(target, "PROVIDER_OR_OFFER")
    found = await client.search_offers(provider=target, sort="newest", limit=1)
    if not found.offers:
        raise click.ClickException(f"the coordinator has no live offer of provider {target}")
    return found.offers[0].offer


async def report(client: CoordinatorClient, verdict: ProbeVerdict, wait_s: float) -> str:
    """Hand the verdict in, retrying while the coordinator does not know the job yet."""
    deadline = trio.current_time() + wait_s
    while True:
        try:
            answer = await client.post_verdict(verdict)
        except CoordinatorClientError as exc:
            if exc.code != "unknown_job" or trio.current_time() >= deadline:
                return f"not reported: {exc}"
            await trio.sleep(1.0)
            continue
        return str(answer.get("status", "recorded"))


@click.command("probe", cls=ProfileCommand)
@key_option
@data_option
@common_network_options
@click.option("--rpc", "rpc_url", required=True, help="JSON-RPC URL of the chain.")
@program_id_option
@click.option("--mint", required=True, help="The dGPU token mint (base58).")
@click.option(
    "--coordinator", "coordinator_url", required=True, help="Where offers and verdicts live."
)
@click.option("--image", required=True, help="Image of the probe job (PyTorch for the workload).")
@click.option("--duration", default=120, show_default=True, help="Most seconds the probe runs.")
@click.option("--max-price", help="Most you pay, dGPU per GPU-hour (default: the offer's price).")
@click.option("--no-report", is_flag=True, help="Keep the verdict here: do not send it.")
@json_option
@click.argument("target", metavar="PROVIDER_OR_OFFER")
def command(
    key_path: Path,
    data_dir: Path,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    psk_file: Path | None,
    rpc_url: str,
    program_id: str | None,
    mint: str,
    coordinator_url: str,
    image: str,
    duration: int,
    max_price: str | None,
    no_report: bool,
    as_json: bool,
    target: str,
) -> None:
    """Check the GPUs of PROVIDER_OR_OFFER (an address or a 32-hex offer id) with a paid
    probe job, and sign the verdict."""
    identity = load_key(key_path)
    config = RenterConfig(
        mint=parse_address(mint, "--mint"), program_id=program_id_bytes(program_id)
    )
    limit = per_second(max_price, "--max-price") if max_price is not None else None
    outcome = trio.run(
        functools.partial(
            _probe,
            identity=identity,
            run=functools.partial(
                _run,
                identity_path=key_path,
                config=config,
                data_dir=data_dir,
                listen=listen,
                bootstrap=bootstrap,
                psk=read_psk(psk_file),
                rpc_url=rpc_url,
                coordinator_url=coordinator_url,
                p2p=False,
                output_dir=None,
                as_json=as_json,
            ),
            coordinator_url=coordinator_url,
            target=target,
            image=image,
            duration=duration,
            limit=limit,
            send=not no_report,
        )
    )
    if as_json:
        emit_json(outcome)
    else:
        _summary(outcome)
    if outcome["verdict"] == "mismatch":
        sys.exit(2)


async def _probe(
    *,
    identity: Identity,
    run: Any,
    coordinator_url: str,
    target: str,
    image: str,
    duration: int,
    limit: int | None,
    send: bool,
) -> dict[str, Any]:
    async with open_coordinator(coordinator_url, identity) as client:
        assert client is not None  # the URL is required
        offer = await find_target(client, target)
    price = offer.price_per_gpu_second
    if limit is not None and price > limit:
        raise click.ClickException(
            f"the offer asks {price} base units per GPU-second, more than --max-price ({limit})"
        )
    spec = JobSpec(
        image=image,
        command=probe_command(),
        gpu_model=offer.gpu_model,
        gpu_count=offer.gpu_count,
        max_duration_s=min(duration, offer.max_duration_s),
        max_price_per_gpu_second=price,
    )
    chunks: list[tuple[str, bytes]] = []

    def tap(event: RenterEvent) -> None:
        if isinstance(event, LogReceived):
            chunks.append((event.stream, event.data))

    job_id = new_job_id(os.urandom(32))
    query = OfferQuery(gpu_model=offer.gpu_model, count=offer.gpu_count)
    result, _ = await run(spec=spec, query=query, job_id=job_id, offers=[offer], tap=tap)
    reading: ProbeReading | None = None
    failure = ""
    try:
        reading = parse_probe_output(stdout_of(chunks))
    except ProbeError as exc:
        failure = f"{exc}; the job {result.state}: {result.detail}"
    judgement = judge(offer, reading, failure=failure)
    verdict = sign_verdict(identity, offer, job_id, judgement, now=int(time.time()))
    reported = "not sent (--no-report)"
    if send:
        async with open_coordinator(coordinator_url, identity) as client:
            assert client is not None
            reported = await report(client, verdict, REPORT_WAIT_S)
    return _outcome(offer, result, reading, judgement, reported)


def _outcome(
    offer: Offer,
    result: JobResult,
    reading: ProbeReading | None,
    judgement: Judgement,
    reported: str,
) -> dict[str, Any]:
    return {
        "verdict": judgement.verdict,
        "reasons": list(judgement.reasons),
        "measured_gflops": judgement.gflops,
        "provider": address_of(offer.provider),
        "offer_id": offer.offer_id.hex(),
        "gpu_model": offer.gpu_model,
        "simulated": offer.simulated,
        "devices": [
            {
                "vendor": d.vendor,
                "name": d.name,
                "vram_mb": d.vram_mb,
                "driver": d.driver,
                "uuid": d.uuid,
                "source": d.source,
            }
            for d in (reading.devices if reading else ())
        ],
        "workload_note": reading.bench_note if reading else "",
        "reported": reported,
        "job": result.to_json(),
    }


def _summary(outcome: dict[str, Any]) -> None:
    colour = {"verified": "green", "mismatch": "red"}.get(outcome["verdict"], "yellow")
    stderr.print(
        f"[{colour}]{outcome['verdict']}[/]: {outcome['gpu_model']} of "
        f"{outcome['provider']} (offer {outcome['offer_id']})",
        highlight=False,
    )
    for reason in outcome["reasons"]:
        stderr.print(f"  - {reason}", highlight=False)
    for device in outcome["devices"]:
        stderr.print(
            f"  saw {device['vendor']} {device['name']} {device['vram_mb']} MiB "
            f"({device['source']})",
            highlight=False,
        )
    stderr.print(
        f"job {outcome['job']['state']}, paid {outcome['job']['amount_paid']} base units; "
        f"verdict {outcome['reported']}",
        highlight=False,
    )
