"""Negotiation state machines (sans-IO): JobRequest -> Quote -> Agreement -> ChannelOpened.

The provider side takes a request and a :class:`ProviderPolicy` and answers with a quote or
an error; then countersigns the renter's agreement; then asks the node to check the escrow
channel on chain (an action) before the job may start. The renter side builds the request,
checks the quote against what it asked for, and signs the agreement. Both refuse events
out of order with :class:`~dgpu.protocol.errors.StateError`.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

from dgpu.protocol.errors import DecodeError, OfferError, ProtocolError, SignatureError, StateError
from dgpu.protocol.identity import Identity
from dgpu.protocol.inputs import InputRefused, InputsTooLarge, check_inputs
from dgpu.protocol.messages import (
    Agreement,
    ChannelOpened,
    EnvVar,
    ErrorMessage,
    InputFile,
    JobRequest,
    Offer,
    Quote,
)
from dgpu.protocol.signing import (
    message_hash,
    sign,
    sign_agreement,
    terms_hash,
    verify,
    verify_agreement,
)

QUOTE_TTL_S = 60
REQUEST_MAX_AGE_S = 120


class Phase(enum.Enum):
    NEW = "new"
    QUOTED = "quoted"
    AGREED = "agreed"
    FUNDED = "funded"
    REFUSED = "refused"


class Refused(ProtocolError):
    """The state machine refuses a request, quote or agreement; ``code`` goes on the wire."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ProviderPolicy:
    """What a provider accepts; a pure value the node builds from its config and state."""

    price_per_gpu_second: int
    gpu_model: str
    free_gpus: int
    mint: bytes
    program_id: bytes
    max_duration_s: int
    interval_s: int = 10
    grace_s: int = 30
    allowed_images: frozenset[str] = frozenset()
    allow_network: bool = False
    max_output_bytes: int = 64 * 1024 * 1024
    bulk_addr: str = ""
    max_input_bytes: int = 0
    allow_ports: bool = False

    def image_allowed(self, image: str) -> bool:
        return not self.allowed_images or image in self.allowed_images


def deposit_for(price_per_gpu_second: int, gpu_count: int, duration_s: int) -> int:
    return price_per_gpu_second * gpu_count * duration_s


@dataclass
class ProviderNegotiation:
    identity: Identity
    phase: Phase = Phase.NEW
    request: JobRequest | None = None
    quote: Quote | None = None
    agreement: Agreement | None = None
    channel: ChannelOpened | None = None

    def on_request(self, request: JobRequest, policy: ProviderPolicy, *, now: int) -> Quote:
        """Check a request; return the signed quote, or raise :class:`Refused`."""
        self._expect(Phase.NEW)
        try:
            verify(request, request.renter)
        except SignatureError as exc:
            raise self._refuse("bad_signature", str(exc)) from exc
        if request.provider != self.identity.public_key:
            raise self._refuse("bad_request", "request is addressed to another provider")
        if abs(now - request.created_at) > REQUEST_MAX_AGE_S:
            raise self._refuse("expired", "request is too old or dated in the future")
        if request.gpu_model != policy.gpu_model:
            raise self._refuse("no_capacity", f"this provider offers {policy.gpu_model}")
        if request.gpu_count > policy.free_gpus:
            raise self._refuse(
                "no_capacity", f"{request.gpu_count} GPUs asked, {policy.free_gpus} free"
            )
        if request.max_price_per_gpu_second < policy.price_per_gpu_second:
            raise self._refuse(
                "price_too_low",
                f"price is {policy.price_per_gpu_second} per GPU-second, "
                f"renter offers at most {request.max_price_per_gpu_second}",
            )
        if not policy.image_allowed(request.image):
            raise self._refuse("image_not_allowed", f"image {request.image!r} is not allowed")
        if request.max_duration_s > policy.max_duration_s:
            raise self._refuse(
                "duration_too_long",
                f"{request.max_duration_s}s asked, at most {policy.max_duration_s}s",
            )
        if request.network and not policy.allow_network:
            raise self._refuse("bad_request", "this provider runs jobs without network")
        if request.max_output_bytes > policy.max_output_bytes:
            raise self._refuse(
                "over_limit", f"outputs are limited to {policy.max_output_bytes} bytes"
            )
        try:
            total = check_inputs(request.inputs, policy.max_input_bytes)
        except InputRefused as exc:
            code = "over_limit" if isinstance(exc, InputsTooLarge) else "bad_request"
            raise self._refuse(code, str(exc)) from exc
        if total != request.max_input_bytes:
            raise self._refuse(
                "bad_request",
                f"inputs total {total} bytes, the request says {request.max_input_bytes}",
            )
        if request.ports and not policy.allow_ports:
            raise self._refuse("bad_request", "this provider opens no ports to the renter")
        if len(set(request.ports)) != len(request.ports):
            raise self._refuse("bad_request", "a port is asked twice")
        quote = Quote(
            job_id=request.job_id,
            provider=self.identity.public_key,
            renter=request.renter,
            request_hash=message_hash(request),
            gpu_model=request.gpu_model,
            gpu_count=request.gpu_count,
            price_per_gpu_second=policy.price_per_gpu_second,
            mint=policy.mint,
            program_id=policy.program_id,
            interval_s=policy.interval_s,
            grace_s=policy.grace_s,
            max_duration_s=request.max_duration_s,
            deposit=deposit_for(
                policy.price_per_gpu_second, request.gpu_count, request.max_duration_s
            ),
            max_output_bytes=request.max_output_bytes,
            bulk_addr=policy.bulk_addr,
            expires_at=now + QUOTE_TTL_S,
            max_input_bytes=request.max_input_bytes,
            ports=list(request.ports),
        )
        self.request, self.quote = request, sign(quote, self.identity)
        self.phase = Phase.QUOTED
        return self.quote

    def on_agreement(self, agreement: Agreement, *, now: int) -> Agreement:
        """Check the renter's signature over our quote and countersign."""
        self._expect(Phase.QUOTED)
        assert self.quote is not None
        if now > self.quote.expires_at:
            raise self._refuse("expired", "the quote expired before the agreement arrived")
        try:
            verify_agreement(agreement, self.quote, both=False)
        except SignatureError as exc:
            raise self._refuse("bad_signature", str(exc)) from exc
        self.agreement = sign_agreement(agreement, self.identity, as_provider=True)
        self.phase = Phase.AGREED
        return self.agreement

    def on_channel_opened(self, opened: ChannelOpened) -> ChannelOpened:
        """Check the renter's claim; the node must then verify the channel on chain."""
        self._expect(Phase.AGREED)
        assert self.quote is not None
        try:
            verify(opened, self.quote.renter)
        except SignatureError as exc:
            raise self._refuse("bad_signature", str(exc)) from exc
        if opened.job_id != self.quote.job_id:
            raise self._refuse("unknown_job", "channel is for another job")
        if opened.deposit < self.quote.deposit:
            raise self._refuse("not_funded", "deposit below the agreed amount")
        self.channel = opened
        return opened

    def on_channel_verified(self) -> None:
        """The node checked on chain: the channel pays us, in our mint, with the deposit."""
        self._expect(Phase.AGREED)
        if self.channel is None:
            raise StateError("no channel to verify")
        self.phase = Phase.FUNDED

    def _expect(self, phase: Phase) -> None:
        if self.phase is not phase:
            raise StateError(f"negotiation is {self.phase.value}, expected {phase.value}")

    def _refuse(self, code: str, message: str) -> Refused:
        self.phase = Phase.REFUSED
        return Refused(code, message)


@dataclass(frozen=True)
class JobSpec:
    """What a renter wants run."""

    image: str
    command: tuple[str, ...]
    gpu_model: str
    gpu_count: int
    max_duration_s: int
    max_price_per_gpu_second: int
    env: tuple[tuple[str, str], ...] = ()
    output_dir: str = ""
    max_output_bytes: int = 0
    network: bool = False
    inputs: tuple[InputFile, ...] = ()
    """The input tree (:func:`dgpu.node.renter.inputs.scan_inputs` makes it)."""
    ports: tuple[int, ...] = ()
    """Container ports to tunnel to the renter."""


@dataclass
class RenterNegotiation:
    identity: Identity
    offer: Offer
    spec: JobSpec
    job_id: bytes = field(default=b"")
    phase: Phase = Phase.NEW
    request: JobRequest | None = None
    quote: Quote | None = None
    agreement: Agreement | None = None

    def make_request(self, *, now: int, job_id: bytes) -> JobRequest:
        self._expect(Phase.NEW)
        if self.spec.gpu_count > self.offer.gpu_count:
            raise OfferError(f"offer has {self.offer.gpu_count} GPUs, {self.spec.gpu_count} asked")
        self.job_id = job_id
        request = JobRequest(
            job_id=job_id,
            renter=self.identity.public_key,
            provider=self.offer.provider,
            offer_id=self.offer.offer_id,
            gpu_model=self.spec.gpu_model,
            gpu_count=self.spec.gpu_count,
            image=self.spec.image,
            command=list(self.spec.command),
            env=[EnvVar(name, value) for name, value in self.spec.env],
            max_duration_s=self.spec.max_duration_s,
            max_price_per_gpu_second=self.spec.max_price_per_gpu_second,
            network=self.spec.network,
            output_dir=self.spec.output_dir,
            max_output_bytes=self.spec.max_output_bytes,
            created_at=now,
            inputs=list(self.spec.inputs),
            max_input_bytes=sum(f.size for f in self.spec.inputs),
            ports=list(self.spec.ports),
        )
        self.request = sign(request, self.identity)
        self.phase = Phase.QUOTED
        return self.request

    def on_quote(self, quote: Quote, *, now: int, program_id: bytes) -> Agreement:
        """Check the quote matches our request and limits; sign the agreement."""
        self._expect(Phase.QUOTED)
        assert self.request is not None
        verify(quote, self.offer.provider)
        checks = {
            "job_id": quote.job_id == self.job_id,
            "provider": quote.provider == self.offer.provider,
            "renter": quote.renter == self.identity.public_key,
            "request_hash": quote.request_hash == message_hash(self.request),
            "gpu_model": quote.gpu_model == self.request.gpu_model,
            "gpu_count": quote.gpu_count == self.request.gpu_count,
            "price_per_gpu_second": quote.price_per_gpu_second
            <= self.request.max_price_per_gpu_second,
            "mint": quote.mint == self.offer.mint,
            "program_id": quote.program_id == program_id,
            "max_duration_s": quote.max_duration_s == self.request.max_duration_s,
            "deposit": quote.deposit
            == deposit_for(quote.price_per_gpu_second, quote.gpu_count, quote.max_duration_s),
            "max_output_bytes": quote.max_output_bytes == self.request.max_output_bytes,
            "max_input_bytes": quote.max_input_bytes == self.request.max_input_bytes,
            "ports": quote.ports == self.request.ports,
            "expires_at": quote.expires_at >= now,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            self.phase = Phase.REFUSED
            raise DecodeError("quote does not match the request", field=bad[0])
        self.quote = quote
        self.agreement = sign_agreement(
            Agreement(job_id=self.job_id, terms_hash=terms_hash(quote), renter_sig=b""),
            self.identity,
            as_provider=False,
        )
        return self.agreement

    def on_countersigned(self, agreement: Agreement) -> Agreement:
        self._expect(Phase.QUOTED)
        assert self.quote is not None
        verify_agreement(agreement, self.quote, both=True)
        self.agreement = agreement
        self.phase = Phase.AGREED
        return agreement

    def channel_opened(
        self, *, channel: bytes, open_nonce: int, expires_at: int, signature: str = ""
    ) -> ChannelOpened:
        self._expect(Phase.AGREED)
        assert self.quote is not None
        self.phase = Phase.FUNDED
        return sign(
            ChannelOpened(
                job_id=self.job_id,
                channel=channel,
                open_nonce=open_nonce,
                deposit=self.quote.deposit,
                expires_at=expires_at,
                signature=signature,
            ),
            self.identity,
        )

    def _expect(self, phase: Phase) -> None:
        if self.phase is not phase:
            raise StateError(f"negotiation is {self.phase.value}, expected {phase.value}")


def refusal(exc: Refused, job_id: bytes | None) -> ErrorMessage:
    return ErrorMessage(code=exc.code, message=exc.message[:256], job_id=job_id)  # type: ignore[arg-type]


def new_job_id(seed: bytes) -> bytes:
    return hashlib.sha256(b"dgpu-job:" + seed).digest()[:16]
