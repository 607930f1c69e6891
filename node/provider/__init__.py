"""The provider role of a node: GPUs for rent, paid per second through receipts.

    provider = Provider(identity=..., config=ProviderConfig(mint=..., program_id=...),
                        network=net, escrow=escrow, executor=executor,
                        gpu_backend=backend, store=NodeStore.open(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)

See :mod:`dgpu.node.provider.node` for the life of the role, :mod:`.session` for one
job's metering, :mod:`.funding` for the checks before a job starts,
:mod:`.settlement` for getting paid, and :mod:`.outputs` (over the node's network) and
:mod:`.bulk_outputs` (over the bulk channel) for handing outputs over.
:class:`VirtualExecutor` runs scripted jobs in trio time (simulations, fast tests).
"""

from dgpu.node.provider.bulk_outputs import BulkOutputHost, open_bulk_output_host
from dgpu.node.provider.capacity import GpuPool, model_price, offer_terms
from dgpu.node.provider.funding import PendingJob, Refusal, check_request, verify_channel
from dgpu.node.provider.node import Provider, ProviderStatus
from dgpu.node.provider.outputs import OUTPUTS_PROTOCOL, StreamOutputHost
from dgpu.node.provider.ports import HostedFile, OfferDesk, OutputHost, ProviderExecutor
from dgpu.node.provider.session import ProviderSession, SessionOutcome
from dgpu.node.provider.settlement import (
    SettleResult,
    hand_to_desk,
    overdue,
    reconcile,
    settle_on_chain,
)
from dgpu.node.provider.virtual import VirtualExecutor, VirtualJob

__all__ = [
    "OUTPUTS_PROTOCOL",
    "BulkOutputHost",
    "GpuPool",
    "HostedFile",
    "OfferDesk",
    "OutputHost",
    "PendingJob",
    "Provider",
    "ProviderExecutor",
    "ProviderSession",
    "ProviderStatus",
    "Refusal",
    "SessionOutcome",
    "SettleResult",
    "StreamOutputHost",
    "VirtualExecutor",
    "VirtualJob",
    "check_request",
    "hand_to_desk",
    "model_price",
    "offer_terms",
    "open_bulk_output_host",
    "overdue",
    "reconcile",
    "settle_on_chain",
    "verify_channel",
]
