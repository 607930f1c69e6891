"""Taking a funded job back after the renter's node restarted (``dgpu jobs resume``).

Everything comes from the node's store (the quote, the request, the channel, the last
receipt signed, the start time) and the provider's signed offer (kept by the caller, for
its addresses). The provider keeps a job running for interval + grace without a receipt;
a node back within that time attaches a new metering stream and signs on. A node back
later finds the job ended (the provider refuses the stream): it signs nothing more, and
what was signed before is all the provider can settle.
"""

from __future__ import annotations

import logging
from pathlib import Path

import trio
from dgpu.contracts_client.money import OpenedChannel
from dgpu.node.renter.errors import JobRefused, RenterError
from dgpu.node.renter.events import EventSink, JobResult, ignore_events
from dgpu.node.renter.job import RenterJob
from dgpu.node.renter.node import Renter
from dgpu.protocol.codec import decode_as
from dgpu.protocol.messages import JobRequest, Offer, Quote
from dgpu.protocol.negotiation import JobSpec

log = logging.getLogger(__name__)


class NotResumable(RenterError):
    """The store holds no funded, unfinished job by that id."""


async def resume_job(
    renter: Renter,
    job_id: bytes,
    *,
    offer: Offer,
    output_dir: Path | None = None,
    events: EventSink = ignore_events,
    cancel: trio.Event | None = None,
) -> JobResult:
    """Attach to the provider's running job ``job_id`` again and meter it to its end."""
    store = renter.store
    record = store.get_job(job_id, "renter")
    channel = store.channel_of_job(job_id)
    if record is None or channel is None or record.quote is None or record.request is None:
        raise NotResumable(f"job {job_id.hex()}: no funded job of this node by that id")
    if record.state not in ("funded", "running", "abandoned"):
        raise NotResumable(f"job {job_id.hex()}: it is {record.state}, nothing to resume")
    quote = decode_as(Quote, record.quote)
    request = decode_as(JobRequest, record.request)
    if offer.provider != quote.provider:
        raise NotResumable(f"job {job_id.hex()}: the offer kept is another provider's")
    spec = JobSpec(
        image=request.image,
        command=tuple(request.command),
        gpu_model=request.gpu_model,
        gpu_count=request.gpu_count,
        max_duration_s=request.max_duration_s,
        max_price_per_gpu_second=request.max_price_per_gpu_second,
        env=tuple((e.name, e.value) for e in request.env),
        output_dir=request.output_dir,
        max_output_bytes=request.max_output_bytes,
        network=request.network,
    )
    job = RenterJob(
        identity=renter.identity,
        config=renter.config,
        network=renter.network,
        escrow=renter.escrow,
        store=store,
        offer=offer,
        spec=spec,
        job_id=job_id,
        emit=events,
        cancel=cancel if cancel is not None else trio.Event(),
        fetcher=renter.fetcher,
        output_dir=output_dir,
    )
    job.resume(
        quote=quote,
        channel=OpenedChannel(
            address=channel.channel,
            open_nonce=channel.open_nonce,
            deposit=channel.deposit,
            expiry=record.channel_expires_at or channel.expires_at,
            signature=channel.open_signature,
        ),
        started_at=record.started_at,
        signed=store.latest_receipt("renter", job_id),
        reclaimable_at=channel.expires_at,
    )
    try:
        return await job.execute()
    except JobRefused as exc:
        log.info("job %s: not resumed: %s", job_id.hex(), exc)
        return job.closed_while_away(f"the provider ended the job while this node was away ({exc})")
