"""Configuration of the node's two roles: frozen dataclasses, passed explicitly.

Nothing here reads the environment or a file; the CLI builds these from its flags (and
the pricing TOML through :mod:`dgpu.pricing.config`). Money is integers of base units,
durations whole seconds.

:class:`ProviderFaults` and :class:`RenterFaults` make a node misbehave on purpose, for
tests and network simulations (a provider that over-reports, a renter that stops paying);
their defaults are honest, and the CLI never sets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from dgpu.pricing import DEFAULT_RATE_CARD, NEUTRAL_BPS, ProviderPricing, RateCard
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.messages import ExecutorKind

DEFAULT_MAX_OUTPUT_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_INPUT_BYTES: Final = 1024 * 1024 * 1024
MAX_DURATION_CAP_S: Final = 30 * 24 * 3600


class ConfigError(DgpuError, ValueError):
    """A configuration value out of range (raised at construction)."""


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")


@dataclass(frozen=True)
class ProviderFaults:
    """Deliberate misbehaviour of a provider (tests and simulations only)."""

    over_report_s: int = 0
    """Claim this many seconds more than really elapsed in every UsageReport."""


@dataclass(frozen=True)
class RenterFaults:
    """Deliberate misbehaviour of a renter (tests and simulations only)."""

    stop_signing_after: int | None = None
    """Sign this many receipts, then answer no more UsageReports (keep the stream open)."""


@dataclass(frozen=True)
class ProviderConfig:
    """What a provider offers and accepts.

    The price of a GPU model is ``price_per_gpu_second`` when given, else the rate card's
    price for the GPU (model, VRAM, power) under ``multiplier_bps``, with ``pricing``'s
    floor and markup applied (:func:`dgpu.pricing.provider_price`).
    """

    mint: bytes
    program_id: bytes
    region: str = "local"
    pricing: ProviderPricing = field(default_factory=ProviderPricing)
    rate_card: RateCard = DEFAULT_RATE_CARD
    multiplier_bps: int = NEUTRAL_BPS
    price_per_gpu_second: int | None = None
    allowed_images: frozenset[str] = frozenset()
    """Images a job may use; empty allows any image (say so loudly in the CLI)."""
    max_duration_s: int = 24 * 3600
    interval_s: int = 10
    """Seconds between UsageReports."""
    grace_s: int = 30
    """How long past an interval the provider waits for a receipt before stopping the job."""
    offer_ttl_s: int = 300
    allow_network: bool = False
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    agreement_timeout_s: int = 10
    """How long a quote holds GPUs while the provider waits for the renter's Agreement."""
    funding_timeout_s: int = 30
    """How long GPUs stay reserved for an agreed job whose channel has not been shown
    (short on purpose: see :mod:`dgpu.node.provider.holds`)."""
    max_unfunded_per_renter: int = 1
    """Holds one renter key may have at once before funding one of them."""
    max_unfunded_per_ip: int = 4
    """Unfunded holds of renters connecting from one IP address at once (renters whose
    address is unknown, e.g. relayed, are not counted: their relay limits them per IP)."""
    unfunded_cooldown_s: int = 60
    """A key whose hold expired unfunded gets no new hold this long (doubling per repeat)."""
    proof_of_funds: bool = True
    """Read the renter's token balance on chain and refuse when it does not cover the
    deposit, before an agreement holds GPUs."""
    channel_margin_s: int = 60
    """The channel must not expire before the job's latest end plus this margin."""
    settle_on_finish: bool = True
    """Without a coordinator, submit the job's latest receipt on chain when it ends."""
    executor: ExecutorKind = "docker"
    """How jobs run here (containers, or local processes): offers say so."""
    self_settle_after_s: int = 600
    """With a coordinator: settle a receipt on chain itself when the chain has not paid it
    this long after its job ended (the coordinator is down or censoring), or sooner when
    the renter could otherwise reclaim the channel first; 0 leaves it to the coordinator."""
    output_retention_s: int = 600
    """How long finished outputs stay available for the renter to fetch."""
    cpu_limit: float | None = None
    memory_limit_mb: int | None = None
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    """The most input bytes one job may send (offered only with a bulk channel; 0: none)."""
    allow_ports: bool = False
    """Tunnel container ports a renter asks for to that renter (``--allow-ports``)."""
    faults: ProviderFaults = field(default_factory=ProviderFaults)

    def __post_init__(self) -> None:
        for name in ("mint", "program_id"):
            if len(getattr(self, name)) != 32:
                raise ConfigError(f"{name} must be a 32-byte public key")
        for name in (
            "interval_s",
            "grace_s",
            "offer_ttl_s",
            "agreement_timeout_s",
            "funding_timeout_s",
            "max_unfunded_per_renter",
            "max_unfunded_per_ip",
        ):
            _positive(name, getattr(self, name))
        if not 1 <= self.max_duration_s <= MAX_DURATION_CAP_S:
            raise ConfigError(f"max_duration_s must be 1..{MAX_DURATION_CAP_S} seconds")
        if self.price_per_gpu_second is not None and self.price_per_gpu_second < 1:
            # a free job would need a 0 deposit, which the escrow refuses
            raise ConfigError("price_per_gpu_second must be at least 1 base unit")
        if self.self_settle_after_s < 0:
            raise ConfigError("self_settle_after_s must not be negative (0 disables)")
        if self.interval_s > 3600 or self.grace_s > 3600:
            raise ConfigError("interval_s and grace_s must be at most 3600 seconds")


@dataclass(frozen=True)
class RenterConfig:
    """How a renter pays and checks."""

    mint: bytes
    program_id: bytes
    fee_bps: int = DEFAULT_RATE_CARD.platform_fee_bps
    """Only to show the platform's share in estimates; the chain applies its own."""
    max_fee_bps: int = 1_000
    """The largest platform fee this renter accepts: channels are opened with this bound,
    and the escrow refuses to open one while its config takes more."""
    max_dispute_window_s: int = 7 * 24 * 3600
    """The longest dispute window (the wait for a refund after expiry) it accepts, ditto."""
    tolerance_s: int = 2
    """Clock slack granted to a provider's reports (see RenterMeter)."""
    channel_margin_s: int = 120
    """Channel expiry = now + the job's max duration + this margin."""
    negotiate_timeout_s: float = 30.0
    """Bounds each later step of a negotiation (the countersigned agreement)."""
    attempt_timeout_s: float = 5.0
    """Bounds connecting to a provider and its quote: one that does not answer a job
    request within this is given up (and remembered as failed)."""
    concurrent_attempts: int = 8
    """Providers asked at once; a new one starts every ``attempt_stagger_s`` while none has
    answered, or as soon as one fails."""
    attempt_stagger_s: float = 0.5
    start_timeout_s: float = 120.0
    """How long to wait for the provider to start the job once the channel is shown."""
    silence_timeout_s: int = 0
    """Give up on a provider silent this long; 0 = the quote's interval + grace + 30 s."""
    max_attempts: int = 32
    """Offers to try (in rank order, ``concurrent_attempts`` at a time) before giving up."""
    faults: RenterFaults = field(default_factory=RenterFaults)

    def __post_init__(self) -> None:
        for name in ("mint", "program_id"):
            if len(getattr(self, name)) != 32:
                raise ConfigError(f"{name} must be a 32-byte public key")
        _positive("max_attempts", self.max_attempts)
        _positive("concurrent_attempts", self.concurrent_attempts)
        if not self.attempt_timeout_s > 0 or self.attempt_stagger_s < 0:
            raise ConfigError("attempt_timeout_s must be > 0 and attempt_stagger_s >= 0")
        if not 0 <= self.fee_bps <= 10_000:
            raise ConfigError("fee_bps must be 0..10000")
        if not 0 <= self.max_fee_bps <= 10_000:
            raise ConfigError("max_fee_bps must be 0..10000")
        if not 0 <= self.max_dispute_window_s < 2**63:
            raise ConfigError("max_dispute_window_s must be a non-negative i64")
