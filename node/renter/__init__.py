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
    InputError,
    JobAborted,
    JobRefused,
    NoMatchingOffer,
    OutputMismatch,
    ProviderMisbehaved,
    RenterError,
    TunnelError,
)
from dgpu.node.renter.events import (
    Agreed,
    Declined,
    Ended,
    Estimated,
    EventSink,
    FetchedOutput,
    Funded,
    InputsSent,
    JobResult,
    LogReceived,
    OffersFound,
    OutputFetched,
    PortsForwarded,
    ReceiptSigned,
    RenterEvent,
    ReportRefused,
    Started,
    ignore_events,
)
from dgpu.node.renter.inputs import InputTree, InputUploader, scan_inputs
from dgpu.node.renter.job import RenterJob
from dgpu.node.renter.node import Reclaimed, Renter, reclaim_channels
from dgpu.node.renter.outputs import OutputFetcher, StreamOutputFetcher
from dgpu.node.renter.peers import BackoffPolicy, PeerMemory, Standing
from dgpu.node.renter.resume import NotResumable, resume_job
from dgpu.node.renter.tunnel import Forward, open_port_forwards

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
    "Forward",
    "FoundOffers",
    "Funded",
    "FundingFailed",
    "InputError",
    "InputTree",
    "InputUploader",
    "InputsSent",
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
    "PortsForwarded",
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
    "TunnelError",
    "exclusion",
    "find_offers",
    "ignore_events",
    "open_port_forwards",
    "rank",
    "reclaim_channels",
    "resume_job",
    "scan_inputs",
]
