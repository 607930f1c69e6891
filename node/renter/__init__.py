"""The renter role of a node: find GPUs, run a job paying per second, reclaim the rest.

    renter = Renter(identity=..., config=RenterConfig(mint=..., program_id=...),
                    network=net, escrow=escrow, store=NodeStore.open(path))
    result = await renter.run_job(spec, events=print)

See :mod:`dgpu.node.renter.node` (the role), :mod:`.job` (one job), :mod:`.discovery`
(finding and ranking offers), :mod:`.events` (progress events and the result),
:mod:`.outputs` and :mod:`.bulk_outputs` (fetching outputs over the node's network or
over the provider's bulk channel).
"""

from dgpu.node.renter.bulk_outputs import BulkFetchStats, BulkOutputFetcher
from dgpu.node.renter.discovery import (
    Candidate,
    CoordinatorIndex,
    FoundOffers,
    OfferIndex,
    OfferQuery,
    exclusion,
    find_offers,
    rank,
)
from dgpu.node.renter.errors import (
    FundingFailed,
    JobAborted,
    JobRefused,
    NoMatchingOffer,
    OutputMismatch,
    ProviderMisbehaved,
    RenterError,
)
from dgpu.node.renter.events import (
    Agreed,
    Declined,
    Ended,
    Estimated,
    EventSink,
    FetchedOutput,
    Funded,
    JobResult,
    LogReceived,
    OffersFound,
    OutputFetched,
    ReceiptSigned,
    RenterEvent,
    ReportRefused,
    Started,
    ignore_events,
)
from dgpu.node.renter.job import RenterJob
from dgpu.node.renter.node import Reclaimed, Renter, reclaim_channels
from dgpu.node.renter.outputs import OutputFetcher, StreamOutputFetcher
from dgpu.node.renter.peers import BackoffPolicy, PeerMemory, Standing
from dgpu.node.renter.resume import NotResumable, resume_job

__all__ = [
    "Agreed",
    "BackoffPolicy",
    "BulkFetchStats",
    "BulkOutputFetcher",
    "Candidate",
    "CoordinatorIndex",
    "Declined",
    "Ended",
    "Estimated",
    "EventSink",
    "FetchedOutput",
    "FoundOffers",
    "Funded",
    "FundingFailed",
    "JobAborted",
    "JobRefused",
    "JobResult",
    "LogReceived",
    "NoMatchingOffer",
    "NotResumable",
    "OfferIndex",
    "OfferQuery",
    "OffersFound",
    "OutputFetched",
    "OutputFetcher",
    "OutputMismatch",
    "PeerMemory",
    "ProviderMisbehaved",
    "ReceiptSigned",
    "Reclaimed",
    "Renter",
    "RenterError",
    "RenterEvent",
    "RenterJob",
    "ReportRefused",
    "Standing",
    "Started",
    "StreamOutputFetcher",
    "exclusion",
    "find_offers",
    "ignore_events",
    "rank",
    "reclaim_channels",
    "resume_job",
]
