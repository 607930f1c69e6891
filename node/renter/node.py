"""The renter role: find an offer, run a job on it paying per second, reclaim the rest.

Like the provider, it takes everything it touches — network, escrow, store, and
optionally the coordinator's index and an output fetcher — and keeps no global state;
the clock is the network's ``now()``::

    renter = Renter(identity=..., config=RenterConfig(mint=..., program_id=...),
                    network=net, escrow=escrow, store=store)
    result = await renter.run_job(JobSpec(image=..., command=(...), gpu_model="RTX 4090",
                                          gpu_count=1, max_duration_s=600,
                                          max_price_per_gpu_second=200_000))
    ...
    await renter.reclaim()          # after expiry: the unspent deposit comes back

``run_job`` tries the ranked offers (at most ``config.max_attempts``) several at once with
short timeouts until one provider agrees (:mod:`dgpu.node.renter.attempts`), remembering
who failed (:mod:`dgpu.node.renter.peers`); once a channel is funded it always returns a
:class:`JobResult` (even when the provider vanished: the money fields say where things
stand) rather than raising.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import trio
from dgpu.contracts_client.money import Escrow
from dgpu.node.config import RenterConfig
from dgpu.node.net.interface import Network
from dgpu.node.renter.attempts import AttemptPolicy, negotiate_first
from dgpu.node.renter.discovery import (
    PROVEN_ASKED,
    FoundOffers,
    OfferIndex,
    OfferQuery,
    find_offers,
)
from dgpu.node.renter.errors import (
    InputError,
    JobRefused,
    NoMatchingOffer,
    TunnelError,
)
from dgpu.node.renter.events import (
    Declined,
    Estimated,
    EventSink,
    InputsSent,
    JobResult,
    OffersFound,
    PortsForwarded,
    ignore_events,
)
from dgpu.node.renter.inputs import InputTree, InputUploader
from dgpu.node.renter.job import RenterJob
from dgpu.node.renter.outputs import OutputFetcher, StreamOutputFetcher
from dgpu.node.renter.peers import PeerMemory
from dgpu.node.renter.tunnel import Forward, open_port_forwards
from dgpu.node.store import NodeStore
from dgpu.pricing import CostEstimate, estimate_cost
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.identity import Identity
from dgpu.protocol.messages import Offer
from dgpu.protocol.negotiation import JobSpec, new_job_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reclaimed:
    channel: bytes
    job_id: bytes
    status: str
    """``reclaimed`` (refunded now), ``closed`` (nothing left on chain), ``not_yet`` or
    ``failed`` (the chain could not be read or refused the refund: ``error`` says why;
    the channel stays open in the store and is tried again next time)."""
    amount: int = 0
    signature: str = ""
    reclaimable_at: int = 0
    error: str = ""


class Renter:
    """The renter role of a node (see the module docstring)."""

    def __init__(
        self,
        *,
        identity: Identity,
        config: RenterConfig,
        network: Network,
        escrow: Escrow,
        store: NodeStore,
        index: OfferIndex | None = None,
        fetcher: OutputFetcher | None = None,
        uploader: InputUploader | None = None,
    ) -> None:
        if config.program_id != escrow.program_id:
            raise ValueError("the config's program id is not the escrow's")
        self.identity = identity
        self.config = config
        self.network = network
        self.escrow = escrow
        self.store = store
        self.index = index
        self.fetcher = fetcher if fetcher is not None else StreamOutputFetcher(network)
        # raw libp2p streams (bulk inputs, port tunnels), where the network has them
        self._open_raw = getattr(network, "open_raw_stream", None)
        self.uploader = uploader or InputUploader(identity, open_stream=self._open_raw)
        self.peers = PeerMemory(store, now=network.now)
        """What this renter saw of each provider: orders offers, remembers failures."""

    def query_for(self, spec: JobSpec) -> OfferQuery:
        return OfferQuery(
            gpu_model=spec.gpu_model,
            count=spec.gpu_count,
            max_price_per_gpu_second=spec.max_price_per_gpu_second,
            duration_s=spec.max_duration_s,
            mint=self.config.mint,
        )

    async def find_offers(self, query: OfferQuery, *, p2p: bool = False) -> FoundOffers:
        """Matching offers, best first (coordinator index unless ``p2p``, else the DHT)."""
        return await find_offers(
            query,
            network=self.network,
            index=self.index,
            p2p=p2p,
            standing=self.peers.standing,
            proven=self.peers.proven(PROVEN_ASKED),
        )

    def estimate(self, offer: Offer, spec: JobSpec) -> CostEstimate:
        """What the job costs at most on ``offer`` (the whole deposit), fee shown apart."""
        return estimate_cost(
            offer.gpu_model,
            spec.gpu_count,
            spec.max_duration_s,
            offer.price_per_gpu_second,
            self.config.fee_bps,
        )

    async def run_job(
        self,
        spec: JobSpec,
        *,
        query: OfferQuery | None = None,
        offers: Sequence[Offer] | None = None,
        p2p: bool = False,
        output_dir: Path | None = None,
        events: EventSink = ignore_events,
        cancel: trio.Event | None = None,
        job_id: bytes | None = None,
        inputs: InputTree | None = None,
        ports: Sequence[Forward] = (),
    ) -> JobResult:
        """Run ``spec`` on the best matching offer (or the given ``offers``, in order).

        ``inputs`` (:func:`~dgpu.node.renter.inputs.scan_inputs`) go to the provider after
        the agreement and before funding; ``ports`` are forwarded from ``127.0.0.1``
        while the job runs (:mod:`dgpu.node.renter.tunnel`)."""
        if inputs is not None:
            spec = replace(spec, inputs=inputs.files)
        if ports:
            spec = replace(spec, ports=tuple(f.remote for f in ports))
        if ports and self._open_raw is None:
            raise TunnelError("this network cannot open tunnels (libp2p only)")
        if offers is None:
            found = await self.find_offers(query or self.query_for(spec), p2p=p2p)
            events(OffersFound(found))
            if not found.candidates:
                raise NoMatchingOffer(found.why_none(), found.excluded)
            offers = found.offers
        if cancel is None:
            cancel = trio.Event()
        fitting: list[Offer] = []
        last: Exception | None = None
        for offer in offers:
            unfit = _unfit(offer, spec)
            if unfit is None:
                fitting.append(offer)
                continue
            events(Declined(offer, unfit[0], unfit[1]))
            last = JobRefused(*unfit)
        jobs = [
            RenterJob(
                identity=self.identity,
                config=self.config,
                network=self.network,
                escrow=self.escrow,
                store=self.store,
                offer=offer,
                spec=spec,
                job_id=job_id or new_job_id(os.urandom(32)),
                emit=events,
                cancel=cancel,
                fetcher=self.fetcher,
                output_dir=output_dir,
            )
            for offer in fitting[: self.config.max_attempts]
        ]
        # one job id may be agreed with one provider only: no racing when it is given
        concurrency = 1 if job_id is not None else self.config.concurrent_attempts
        job, raced = await negotiate_first(
            jobs,
            policy=AttemptPolicy(concurrency, self.config.attempt_stagger_s),
            memory=self.peers,
            events=events,
            cancel=cancel,
        )
        last = raced or last
        if job is None or cancel.is_set():
            if isinstance(last, JobRefused):
                raise last
            raise JobRefused("unreachable", str(last) if last else "cancelled before any provider")
        events(Estimated(job.offer, self.estimate(job.offer, spec)))
        if inputs is not None and inputs.files:
            assert job.quote is not None
            try:
                await self.uploader.upload(job.quote, inputs)
            except InputError as exc:
                # nothing was funded: the provider's hold simply expires
                self.store.update_job(
                    job.job_id,
                    "renter",
                    now=self.network.now(),
                    state="failed",
                    detail=f"inputs: {exc}"[:256],
                )
                raise
            stats = self.uploader.stats
            events(InputsSent(stats.files, stats.bytes, stats.resumed))
        async with AsyncExitStack() as stack:
            opened: list[int] = []
            if ports:  # listening before funding: a taken local port costs nothing
                assert self._open_raw is not None
                opened = await stack.enter_async_context(
                    open_port_forwards(
                        ports,
                        open_stream=self._open_raw,
                        peer=job.peer.peer_id,
                        job_id=job.job_id,
                    )
                )
            await job.fund()
            if ports:
                pairs = tuple((p, f.remote) for p, f in zip(opened, ports, strict=True))
                events(PortsForwarded(pairs))
            try:
                result = await job.execute()
            except JobRefused as exc:
                self.peers.failed(job.offer.provider, f"refused after funding: {exc}")
                raise
        if result.state == "aborted":
            self.peers.failed(job.offer.provider, result.detail or "vanished during the job")
        else:
            self.peers.succeeded(job.offer.provider)
        return result

    async def reclaim(self, *, channel: bytes | None = None) -> list[Reclaimed]:
        """Refund every open channel of ours past its expiry and dispute window (or just
        ``channel``); channels not reclaimable yet are reported as ``not_yet``."""
        return await reclaim_channels(
            self.store, self.escrow, self.identity, now=self.network.now, channel=channel
        )


def _unfit(offer: Offer, spec: JobSpec) -> tuple[str, str] | None:
    """Why ``offer`` cannot take ``spec``'s inputs or ports (None: it can)."""
    size = sum(f.size for f in spec.inputs)
    if spec.inputs and size > offer.max_input_bytes:
        return "over_limit", f"{size} input bytes, the offer takes {offer.max_input_bytes}"
    if spec.ports and not offer.ports:
        return "bad_request", "the provider opens no ports"
    return None


async def reclaim_channels(
    store: NodeStore,
    escrow: Escrow,
    identity: Identity,
    *,
    now: Callable[[], int],
    channel: bytes | None = None,
) -> list[Reclaimed]:
    """:meth:`Renter.reclaim` without a running node (the chain is all it needs)."""
    chain_now = await escrow.unix_time()
    results: list[Reclaimed] = []
    for record in store.channels(status="open"):
        if channel is not None and record.channel != channel:
            continue
        try:
            state = await escrow.read_channel(record.channel)
        except DgpuError as exc:
            log.warning("cannot read channel %s: %s", record.channel.hex(), exc)
            results.append(Reclaimed(record.channel, record.job_id, "failed", error=str(exc)[:500]))
            continue
        if state is None:
            store.update_channel(record.channel, status="closed", now=now())
            results.append(Reclaimed(record.channel, record.job_id, "closed"))
            continue
        if chain_now < state.reclaimable_at:
            results.append(
                Reclaimed(
                    record.channel,
                    record.job_id,
                    "not_yet",
                    amount=state.remaining,
                    reclaimable_at=state.reclaimable_at,
                )
            )
            continue
        try:
            refunded = await escrow.refund(identity, record.channel)
        except DgpuError as exc:
            # One channel the chain will not refund must not keep the others locked.
            log.warning("cannot reclaim channel %s: %s", record.channel.hex(), exc)
            results.append(
                Reclaimed(
                    record.channel,
                    record.job_id,
                    "failed",
                    amount=state.remaining,
                    reclaimable_at=state.reclaimable_at,
                    error=str(exc)[:500],
                )
            )
            continue
        store.update_channel(
            record.channel,
            status="reclaimed",
            reclaimed=refunded.amount,
            reclaim_signature=refunded.signature,
            now=now(),
        )
        log.info("reclaimed %d from channel %s", refunded.amount, record.channel.hex())
        results.append(
            Reclaimed(
                record.channel,
                record.job_id,
                "reclaimed",
                amount=refunded.amount,
                signature=refunded.signature,
                reclaimable_at=state.reclaimable_at,
            )
        )
    return results
