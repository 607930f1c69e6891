"""Typed, immutable messages of the whole job life, with one canonical encoding.

Every message is a frozen ``msgspec`` struct. On the wire a message is a MessagePack map
whose first key is ``type`` (the tag) followed by every field in declaration order — one
canonical form: :func:`decode` re-encodes what it parsed and refuses bytes that differ, so
two encodings of the same message cannot both verify. Amounts are ``int`` base units; no
float appears anywhere. Signed messages carry ``sig`` as their last field; the signature
covers the canonical bytes of the message with ``sig`` empty, under a per-kind domain tag
(see :mod:`dgpu.protocol.signing`).

Flow::

    provider ── Offer ──────────▶ everyone (DHT, gossip, coordinator)
    renter   ── JobRequest ─────▶ provider
    provider ── Quote ──────────▶ renter          (terms: price, interval, grace, deposit)
    renter   ── Agreement ──────▶ provider        (renter's signature over the terms hash)
    provider ── Agreement ──────▶ renter          (countersigned)
    renter   ── ChannelOpened ──▶ provider        (escrow channel funded on chain)
    provider ── JobStatus/LogChunk/UsageReport ─▶ renter
    renter   ── Receipt ────────▶ provider        (cumulative, signed 64-byte layout)
    provider ── ReceiptAck ─────▶ renter          (stored durably)
    either   ── Cancel / ErrorMessage
    provider ── OutputManifest ─▶ renter          (sha256 of every output file)

    any node ── OfferBookQuery ─▶ a peer          (which offers of a model it knows)
    the peer ── OfferBookPage … ▶ the asker       (then closes the stream)
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_LOG_CHUNK_BYTES: Final = 16 * 1024
# msgspec bounds fit in int64: amounts above 2**63 - 1 base units (9.2e9 dGPU) are refused.
U64_MAX: Final = 2**63 - 1

# Field types with their bounds: decoding enforces them and names the field on failure.
U64 = Annotated[int, Meta(ge=0, le=U64_MAX)]
U32 = Annotated[int, Meta(ge=0, le=2**32 - 1)]
Version = Annotated[int, Meta(ge=PROTOCOL_VERSION, le=PROTOCOL_VERSION)]
PublicKey = Annotated[bytes, Meta(min_length=32, max_length=32)]
Hash32 = Annotated[bytes, Meta(min_length=32, max_length=32)]
Id16 = Annotated[bytes, Meta(min_length=16, max_length=16)]
Sig = Annotated[bytes, Meta(max_length=64)]
ModelName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 ._-]+\Z")]
Region = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+\Z")]
ShortText = Annotated[str, Meta(max_length=256)]
# Patterns are searched (msgspec uses re.search): anchor the end with \Z, since "$" also
# matches before a trailing newline ("H100\n" would pass).
Multiaddr = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^/[A-Za-z0-9._~:%+/-]*\Z")]
GpuCount = Annotated[int, Meta(ge=1, le=64)]
# What a GPU backend read, as offers carry it: printable ASCII only (the backend replaces
# anything else), so no control character or markup-significant byte sequence of another
# script reaches a log line or a page unescaped.
GpuVendor = Literal["nvidia", "amd", "apple", "unknown"]
# How the provider runs jobs: containers, or local processes (Apple Silicon: no GPU reaches
# a container on macOS).
ExecutorKind = Literal["docker", "local"]
DeviceText = Annotated[str, Meta(max_length=96, pattern=r"^[ -~]*\Z")]
GpuUuid = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+\Z")]
Seconds = Annotated[int, Meta(ge=1, le=30 * 24 * 3600)]


class Message(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """Base of every wire message."""

    v: Version = PROTOCOL_VERSION


class Offer(Message, tag="offer", kw_only=True, frozen=True):
    """A provider's signed advertisement of GPU capacity at a price."""

    provider: PublicKey
    offer_id: Id16
    gpu_model: ModelName
    gpu_count: GpuCount
    vram_mb: Annotated[int, Meta(ge=1, le=4 * 1024 * 1024)]
    power_w: Annotated[int, Meta(ge=0, le=10_000)] = 0
    simulated: bool
    # What the GPU backend read (signed with the rest): the vendor, the driver's own name of
    # the model, the driver's version and, where the driver has one, each board's UUID (one
    # per offered GPU, or none). Simulated GPUs carry simulated=True whatever these say.
    gpu_vendor: GpuVendor = "unknown"
    gpu_name: DeviceText = ""
    driver_version: DeviceText = ""
    gpu_uuids: Annotated[list[GpuUuid], Meta(max_length=64)] = []
    executor: ExecutorKind = "docker"
    price_per_gpu_second: U64
    mint: PublicKey
    region: Region
    max_duration_s: Seconds
    multiaddrs: Annotated[list[Multiaddr], Meta(max_length=8)]
    created_at: U64
    expires_at: U64
    # Inputs this provider takes per job (bytes; 0: none) and whether it tunnels container
    # ports to the job's renter (``dgpu provider start --allow-ports``).
    max_input_bytes: U64 = 0
    ports: bool = False
    sig: Sig = b""

    def __post_init__(self) -> None:
        # Raised while decoding too, where msgspec reports it as a validation error.
        if self.gpu_uuids and len(self.gpu_uuids) != self.gpu_count:
            raise ValueError(
                f"gpu_uuids: {len(self.gpu_uuids)} UUIDs for {self.gpu_count} GPUs "
                "(one per offered GPU, or none)"
            )


# A TCP port inside the container (privileged ports too: the container has its own stack).
Port = Annotated[int, Meta(ge=1, le=65535)]
# A relative, ``/``-separated path of an input tree. Its rules (relative, no empty, ``.`` or
# ``..`` component, no NUL, no symlink leaving the tree) are checked, with words, by
# :func:`dgpu.protocol.inputs.check_inputs` rather than by a pattern here: a refusal
# must tell the renter which path and why.
InputPath = Annotated[str, Meta(min_length=1, max_length=256)]


class InputFile(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """One entry of a job's input tree, mounted read-only under ``/in``: a file (its
    content named by sha256 and size) or, when ``link`` is set, a symlink to ``link``
    (relative, resolved inside the tree; ``sha256`` empty and ``size`` 0)."""

    path: InputPath
    sha256: Annotated[bytes, Meta(max_length=32)]
    size: U64
    link: Annotated[str, Meta(max_length=256)] = ""


class EnvVar(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*\Z")]
    value: Annotated[str, Meta(max_length=4096)]


class JobRequest(Message, tag="job_request", kw_only=True, frozen=True):
    """A renter asks a provider to run a container on some of its GPUs."""

    job_id: Id16
    renter: PublicKey
    provider: PublicKey
    offer_id: Id16
    gpu_model: ModelName
    gpu_count: GpuCount
    image: Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9./:@_-]+\Z")]
    command: Annotated[list[Annotated[str, Meta(max_length=4096)]], Meta(max_length=64)]
    env: Annotated[list[EnvVar], Meta(max_length=64)] = []
    max_duration_s: Seconds
    max_price_per_gpu_second: U64
    network: bool = False
    output_dir: Annotated[str, Meta(max_length=256)] = ""
    max_output_bytes: U64 = 0
    created_at: U64
    # The input tree sent before the job starts (mounted read-only at /in), its total size
    # (the bound agreed in the Quote) and the container ports to tunnel to the renter.
    inputs: Annotated[list[InputFile], Meta(max_length=1024)] = []
    max_input_bytes: U64 = 0
    ports: Annotated[list[Port], Meta(max_length=16)] = []
    sig: Sig = b""


class Quote(Message, tag="quote", kw_only=True, frozen=True):
    """The provider's binding terms for one request."""

    job_id: Id16
    provider: PublicKey
    renter: PublicKey
    request_hash: Hash32
    gpu_model: ModelName
    gpu_count: GpuCount
    price_per_gpu_second: U64
    mint: PublicKey
    program_id: PublicKey
    interval_s: Annotated[int, Meta(ge=1, le=3600)]
    grace_s: Annotated[int, Meta(ge=1, le=3600)]
    max_duration_s: Seconds
    deposit: U64
    max_output_bytes: U64 = 0
    bulk_addr: Annotated[str, Meta(max_length=256)] = ""
    expires_at: U64
    # Agreed: the bytes of input the provider takes (the request's total) and the ports it
    # tunnels; both must equal the request's.
    max_input_bytes: U64 = 0
    ports: Annotated[list[Port], Meta(max_length=16)] = []
    sig: Sig = b""


class Agreement(Message, tag="agreement", kw_only=True, frozen=True):
    """Both parties' signatures over the hash of the quote (the terms)."""

    job_id: Id16
    terms_hash: Hash32
    renter_sig: Sig
    provider_sig: Sig = b""


class ChannelOpened(Message, tag="channel_opened", kw_only=True, frozen=True):
    """The renter funded the escrow channel for this job."""

    job_id: Id16
    channel: PublicKey
    open_nonce: U64
    deposit: U64
    expires_at: U64
    signature: Annotated[str, Meta(max_length=128)] = ""
    sig: Sig = b""


class GpuSample(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    index: Annotated[int, Meta(ge=0, le=63)]
    util_pct: Annotated[int, Meta(ge=0, le=100)]
    mem_used_mb: Annotated[int, Meta(ge=0, le=4 * 1024 * 1024)]
    power_mw: Annotated[int, Meta(ge=0, le=10_000_000)]
    temp_c: Annotated[int, Meta(ge=-50, le=200)]


class UsageReport(Message, tag="usage_report", kw_only=True, frozen=True):
    """Provider's signed meter reading: cumulative billed seconds and amount owed."""

    job_id: Id16
    seq: U32
    elapsed_s: U32
    amount_due: U64
    samples: Annotated[list[GpuSample], Meta(max_length=64)] = []
    at: U64
    sig: Sig = b""


class Receipt(Message, tag="receipt", kw_only=True, frozen=True):
    """The renter's signed cumulative receipt; ``sig`` covers the 64-byte layout of
    :mod:`dgpu.protocol.receipt`, not this msgpack form."""

    job_id: Id16
    seq: U32
    renter: PublicKey
    program_id: PublicKey
    channel: PublicKey
    open_nonce: U64
    cumulative: U64
    sig: Sig = b""


class ReceiptAck(Message, tag="receipt_ack", kw_only=True, frozen=True):
    """The provider has durably stored the renter's receipt ``seq`` for ``cumulative``:
    it can no longer lose it (not even through ``kill -9``)."""

    job_id: Id16
    seq: U32
    cumulative: U64


class Cancel(Message, tag="cancel", kw_only=True, frozen=True):
    job_id: Id16
    reason: ShortText = ""
    sig: Sig = b""


JobState = Literal["accepted", "starting", "running", "succeeded", "failed", "cancelled", "stopped"]


class JobStatus(Message, tag="job_status", kw_only=True, frozen=True):
    job_id: Id16
    state: JobState
    exit_code: Annotated[int, Meta(ge=-255, le=255)] | None = None
    detail: ShortText = ""


class LogChunk(Message, tag="log_chunk", kw_only=True, frozen=True):
    job_id: Id16
    seq: U32
    stream: Literal["stdout", "stderr"]
    data: Annotated[bytes, Meta(max_length=MAX_LOG_CHUNK_BYTES)]


class OutputFile(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    path: Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^/\x00][^\x00]*\Z")]
    sha256: Hash32
    size: U64


class OutputManifest(Message, tag="output_manifest", kw_only=True, frozen=True):
    job_id: Id16
    files: Annotated[list[OutputFile], Meta(max_length=256)]
    sig: Sig = b""


ErrorCode = Literal[
    "bad_request",
    "bad_signature",
    "expired",
    "no_capacity",
    "price_too_low",
    "image_not_allowed",
    "duration_too_long",
    "not_funded",
    "unknown_job",
    "over_limit",
    "internal",
]


class ErrorMessage(Message, tag="error", kw_only=True, frozen=True):
    code: ErrorCode
    message: ShortText
    job_id: Id16 | None = None


# What a renter's probe job concluded about a provider's offer (see
# dgpu.node.renter.probe): "verified" (the devices read inside the job match the offer and
# the timed workload fell in the model's band), "mismatch" (something contradicts the
# offer: ``reasons`` names it), "simulated" (the offer's GPUs do not exist; never
# "verified"), "inconclusive" (nothing could be checked, e.g. no device was readable).
VerdictKind = Literal["verified", "mismatch", "simulated", "inconclusive"]
VERDICTS: Final[tuple[VerdictKind, ...]] = ("verified", "mismatch", "simulated", "inconclusive")


class ProbeVerdict(Message, tag="probe_verdict", kw_only=True, frozen=True):
    """A probe's verdict on one offer, signed by the renter that ran (and paid) the probe
    job ``job_id``; posted to the coordinator, which stores it beside the provider's score.
    Not a stream message: it travels over HTTP only."""

    renter: PublicKey
    provider: PublicKey
    offer_id: Id16
    job_id: Id16
    gpu_model: ModelName
    verdict: VerdictKind
    reasons: Annotated[list[ShortText], Meta(max_length=8)] = []
    workload: Annotated[str, Meta(max_length=32, pattern=r"^[a-z0-9-]*\Z")] = ""
    measured_gflops: U64 = 0
    """What the workload measured (0: it did not run)."""
    at: U64
    sig: Sig = b""


MAX_BOOK_ANSWER: Final = 1024
"""Offers one :class:`OfferBookQuery` can ask for (each is its own frame)."""


class OfferBookQuery(Message, tag="offer_book_query", kw_only=True, frozen=True):
    """Ask a peer for the offers of ``gpu_model`` it knows (its offer book: what it heard
    by gossip and what its own searches found). The peer answers with up to ``limit``
    signed offers, cheapest first, in :class:`OfferBookPage` messages, and closes the
    stream. Unsigned: the offers carry their providers' signatures, and the asker checks
    each one."""

    gpu_model: ModelName
    limit: Annotated[int, Meta(ge=1, le=MAX_BOOK_ANSWER)]


class OfferBookPage(Message, tag="offer_book_page", kw_only=True, frozen=True):
    """Part of the answer to an :class:`OfferBookQuery`: as many offers as fit one frame
    (one frame per offer would cost the answering peer a write, an encryption and a
    muxer header each)."""

    offers: Annotated[list[Offer], Meta(min_length=1, max_length=MAX_BOOK_ANSWER)]


AnyMessage = (
    Offer
    | OfferBookQuery
    | OfferBookPage
    | JobRequest
    | Quote
    | Agreement
    | ChannelOpened
    | UsageReport
    | Receipt
    | ReceiptAck
    | Cancel
    | JobStatus
    | LogChunk
    | OutputManifest
    | ErrorMessage
)
