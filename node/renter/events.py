"""What a renter's job goes through, as events (for progress displays) and its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgpu.contracts_client.money import OpenedChannel
from dgpu.node.renter.discovery import FoundOffers
from dgpu.pricing import CostEstimate
from dgpu.protocol.identity import address_of
from dgpu.protocol.messages import Offer, Quote


@dataclass(frozen=True)
class OffersFound:
    found: FoundOffers


@dataclass(frozen=True)
class Estimated:
    offer: Offer
    estimate: CostEstimate


@dataclass(frozen=True)
class Declined:
    offer: Offer
    code: str
    message: str


@dataclass(frozen=True)
class Agreed:
    quote: Quote


@dataclass(frozen=True)
class Funded:
    channel: OpenedChannel


@dataclass(frozen=True)
class Started:
    job_id: bytes


@dataclass(frozen=True)
class LogReceived:
    stream: str
    data: bytes


@dataclass(frozen=True)
class ReceiptSigned:
    seq: int
    elapsed_s: int
    cumulative: int


@dataclass(frozen=True)
class ReportRefused:
    reason: str


@dataclass(frozen=True)
class Ended:
    state: str
    exit_code: int | None
    detail: str


@dataclass(frozen=True)
class OutputFetched:
    path: str
    size: int


@dataclass(frozen=True)
class InputsSent:
    """Every input is on the provider (before funding: the transfer is not billed)."""

    files: int
    bytes: int
    resumed: int


@dataclass(frozen=True)
class PortsForwarded:
    """``127.0.0.1:local`` now reaches the container's ``remote`` port (pairs)."""

    ports: tuple[tuple[int, int], ...]


RenterEvent = (
    OffersFound
    | Estimated
    | Declined
    | Agreed
    | Funded
    | Started
    | LogReceived
    | ReceiptSigned
    | ReportRefused
    | Ended
    | OutputFetched
    | InputsSent
    | PortsForwarded
)
EventSink = Callable[[RenterEvent], None]


def ignore_events(event: RenterEvent) -> None:
    """The default sink."""


@dataclass(frozen=True)
class FetchedOutput:
    path: str
    sha256: str
    size: int
    local: Path | None
    """Where it was written (None when outputs were not fetched)."""


@dataclass(frozen=True)
class JobResult:
    """How a funded job ended, and what it cost. Amounts are base units."""

    job_id: bytes
    provider: bytes
    state: str
    """succeeded, failed, cancelled, stopped (by the provider), or aborted (no final
    status: the provider vanished or went silent)."""
    exit_code: int | None
    detail: str
    price_per_gpu_second: int
    gpu_count: int
    seconds_billed: int
    amount_paid: int
    """The highest cumulative receipt signed."""
    acknowledged: int
    """The highest cumulative receipt the provider confirmed it stored."""
    deposit: int
    channel: bytes
    open_nonce: int
    reclaimable_at: int
    outputs: list[FetchedOutput] = field(default_factory=list)
    disputes: list[str] = field(default_factory=list)
    """Reports the renter refused to pay (a provider claiming too much)."""
    paid_on_chain: int | None = None
    """What the chain had paid from the channel when the result was made (None: not
    read). Signed is what the provider *may* settle; this is what it did."""

    @property
    def ok(self) -> bool:
        return self.state == "succeeded" and not self.disputes

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id.hex(),
            "provider": address_of(self.provider),
            "state": self.state,
            "exit_code": self.exit_code,
            "detail": self.detail,
            "price_per_gpu_second": self.price_per_gpu_second,
            "gpu_count": self.gpu_count,
            "seconds_billed": self.seconds_billed,
            "amount_paid": self.amount_paid,
            "acknowledged": self.acknowledged,
            "deposit": self.deposit,
            "channel": address_of(self.channel),
            "open_nonce": self.open_nonce,
            "reclaimable_at": self.reclaimable_at,
            "outputs": [
                {
                    "path": o.path,
                    "sha256": o.sha256,
                    "size": o.size,
                    "local": str(o.local) if o.local else None,
                }
                for o in self.outputs
            ],
            "disputes": self.disputes,
            "paid_on_chain": self.paid_on_chain,
        }
