"""The provider's checks before a job may start: the request, then the channel on chain.

:func:`check_request` adds to the protocol's negotiation checks what only the node knows
(who is on the other end of the stream, job ids already used, what the executor
accepts); :func:`verify_channel` reads the escrow channel the renter claims to have
funded and refuses unless it pays *this* provider, in the agreed mint, from the agreed
renter, with the agreed deposit still unspent, at the claimed opening, and stays open
long enough for the job to end and be settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from dgpu.contracts_client.money import Escrow
from dgpu.node.config import ProviderConfig
from dgpu.node.executors.errors import JobSpecError
from dgpu.node.executors.spec import JobSpec as ExecSpec
from dgpu.node.net.interface import CircuitLimit
from dgpu.node.store import NodeStore
from dgpu.protocol.errors import DgpuError, StateError
from dgpu.protocol.identity import Identity, public_key_of_peer_id
from dgpu.protocol.messages import ChannelOpened, ErrorCode, ErrorMessage, JobRequest, Quote
from dgpu.protocol.metering import ChannelRef
from dgpu.protocol.negotiation import ProviderNegotiation, Refused


class Refusal(DgpuError):
    """Why the provider says no; becomes an :class:`ErrorMessage` on the wire."""

    def __init__(self, code: str, message: str, job_id: bytes | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.job_id = job_id

    @property
    def job_id_hex(self) -> str:
        return self.job_id.hex() if self.job_id else "-"

    def for_job(self, job_id: bytes) -> Refusal:
        return Refusal(self.code, self.message, job_id)

    def message_for_wire(self) -> ErrorMessage:
        return ErrorMessage(
            code=cast(ErrorCode, self.code), message=self.message[:256], job_id=self.job_id
        )


@dataclass
class PendingJob:
    """An agreed job whose GPUs are reserved, waiting for its channel."""

    negotiation: ProviderNegotiation
    request: JobRequest
    quote: Quote
    gpus: tuple[int, ...]


def check_request(request: JobRequest, peer: str, config: ProviderConfig, store: NodeStore) -> None:
    """Raise :class:`Refusal` for what the protocol's checks do not cover."""
    try:
        sender = public_key_of_peer_id(peer)
    except DgpuError:
        sender = b""
    if sender != request.renter:
        raise Refusal("bad_request", "the request is signed for another peer than the sender")
    if not request.command:
        raise Refusal("bad_request", "the request has no command to run")
    if store.get_job(request.job_id, "provider") is not None:
        raise Refusal("bad_request", "this job id was already used")
    try:
        ExecSpec(
            job_id=request.job_id.hex(),
            image=request.image,
            command=tuple(request.command),
            env={e.name: e.value for e in request.env},
            network=request.network,
            output_dir=request.output_dir or "/out",
            max_output_bytes=request.max_output_bytes,
        )
    except JobSpecError as exc:
        raise Refusal("bad_request", str(exc)) from exc


def check_circuit(request: JobRequest, limit: CircuitLimit) -> None:
    """Refuse, before any money moves, a job that the relay circuit the renter reaches us
    through cannot carry: its inputs and outputs above the bytes the relay lets one
    circuit carry, or its duration above the circuit's lifetime (both as the relay
    stated them). The words name both numbers."""
    moved = request.max_output_bytes + request.max_input_bytes
    if limit.data_bytes and moved > limit.data_bytes:
        raise Refusal(
            "over_limit",
            f"this provider is reached only through a relay whose circuits carry at most "
            f"{limit.data_bytes} bytes; the job may move {moved} bytes (outputs "
            f"{request.max_output_bytes} + inputs {request.max_input_bytes}): ask for less "
            "output or choose a provider reached directly",
        )
    if limit.seconds and request.max_duration_s > limit.seconds:
        raise Refusal(
            "over_limit",
            f"this provider is reached only through a relay whose circuits last at most "
            f"{limit.seconds} s; the job may run {request.max_duration_s} s: ask for a "
            "shorter duration or choose a provider reached directly",
        )


async def verify_channel(
    pending: PendingJob,
    opened: ChannelOpened,
    escrow: Escrow,
    identity: Identity,
    config: ProviderConfig,
    store: NodeStore,
    now: int,
) -> ChannelRef:
    """Check the renter's ChannelOpened, then the channel itself on chain."""
    quote = pending.quote
    try:
        pending.negotiation.on_channel_opened(opened)
    except Refused as exc:
        raise Refusal(exc.code, exc.message) from exc
    try:
        state = await escrow.read_channel(opened.channel)
    except DgpuError as exc:  # not a channel account, or the chain did not answer
        raise Refusal("not_funded", f"cannot read a channel at that address: {exc}"[:256]) from exc
    if state is None:
        raise Refusal("not_funded", "no escrow channel exists at the announced address")
    problems = {
        "provider": state.provider == identity.public_key,
        "renter": state.renter == quote.renter,
        "mint": state.mint == quote.mint,
        "open_nonce": state.open_nonce == opened.open_nonce,
        "deposit": state.deposit >= quote.deposit,
        "unspent": state.settled == 0,
        "open": not state.closed,
        "expiry": state.expiry >= now + quote.max_duration_s + config.channel_margin_s,
    }
    bad = [name for name, ok in problems.items() if not ok]
    if bad:
        raise Refusal("not_funded", f"the channel on chain does not fund this job ({bad[0]})")
    for job in store.jobs("provider"):
        if job.channel == opened.channel and job.open_nonce == opened.open_nonce:
            raise Refusal("not_funded", "this channel already funds another job")
    try:
        pending.negotiation.on_channel_verified()
    except StateError as exc:
        raise Refusal("internal", str(exc)) from exc
    return ChannelRef(
        program_id=escrow.program_id,
        channel=opened.channel,
        open_nonce=opened.open_nonce,
        deposit=quote.deposit,
    )
