"""What a simulation runs: a scenario, as frozen dataclasses (read from TOML by
:mod:`dgpu.simulations.scenario_toml`).

A scenario names the population (providers with a GPU mix and price policies, renters),
the job arrival process (Poisson per renter, seeded) and durations, the metering terms,
the settlement path, the faults to inject and, for the market mode, supply shocks. The
same scenario runs at node level (``dgpu sim run``: the real node logic on the in-memory
network) and at market level (``dgpu sim market``: pricing and matching only).

Money is ``int`` base units; rates and probabilities (not money) are floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Distribution = Literal["exponential", "uniform", "fixed"]
CoordinatorMode = Literal["up", "down", "censor"]
ChainBackend = Literal["auto", "litesvm", "ledger"]


@dataclass(frozen=True)
class GpuMixEntry:
    """Providers draw one entry of the mix by weight: ``per_node`` GPUs of ``model``."""

    model: str
    per_node: int
    weight: int


@dataclass(frozen=True)
class PricePolicy:
    """How providers price: each draws a markup in ``[markup_min_bps, markup_max_bps]`` (a
    multiple of ``markup_step_bps``) applied to the reference price, never below the floor,
    and reprices every ``reprice_s``."""

    markup_min_bps: int = 0
    markup_max_bps: int = 0
    markup_step_bps: int = 100
    floor_per_gpu_second: int = 0
    reprice_s: int = 300


@dataclass(frozen=True)
class ProvidersSpec:
    count: int
    gpus: tuple[GpuMixEntry, ...]
    pricing: PricePolicy = PricePolicy()
    interval_s: int = 10
    grace_s: int = 30
    max_duration_s: int = 86_400
    offer_ttl_s: int = 300


@dataclass(frozen=True)
class RentersSpec:
    count: int
    balance: int
    """Base units each renter holds at the start."""


@dataclass(frozen=True)
class JobsSpec:
    """Arrivals: a Poisson process per renter; durations drawn from ``duration``, clipped
    to ``[min_duration_s, max_duration_s]`` (the latter is also the requested maximum)."""

    per_renter_per_hour: float
    duration: Distribution = "exponential"
    mean_duration_s: int = 1800
    min_duration_s: int = 60
    max_duration_s: int = 7200
    gpu_count: tuple[tuple[int, int], ...] = ((1, 1),)
    """``(count, weight)`` pairs."""
    max_price_markup_min_bps: int = 0
    max_price_markup_max_bps: int = 5000
    """Renters pay at most the reference price x (1 + markup), markup drawn per job."""
    retries: int = 2
    retry_after_s: int = 120


@dataclass(frozen=True)
class SettlementSpec:
    coordinator: CoordinatorMode = "up"
    batch_interval_s: int = 600
    max_receipts_per_tx: int = 5
    censored_fraction: float = 0.0
    """With ``coordinator = "censor"``: the share of providers whose receipts it drops."""
    self_settle_after_s: int = 1800
    """A provider settles itself a receipt still unpaid this long after the job ended
    (the role's own fallback, ``ProviderConfig.self_settle_after_s``)."""


@dataclass(frozen=True)
class ChainSpec:
    backend: ChainBackend = "auto"
    litesvm_max_nodes: int = 60
    """With ``auto``: LiteSVM up to this many nodes, the proven-equivalent ledger above."""


@dataclass(frozen=True)
class Partition:
    at_s: int
    duration_s: int
    fraction: float
    """Share of the nodes cut off from the rest (they still reach each other)."""


@dataclass(frozen=True)
class Crashes:
    per_node_per_day: float = 0.0
    restart_min_s: int = 30
    restart_max_s: int = 600


@dataclass(frozen=True)
class Churn:
    per_provider_per_day: float = 0.0
    offline_min_s: int = 600
    offline_max_s: int = 7200


@dataclass(frozen=True)
class OverReport:
    fraction: float = 0.0
    seconds: int = 60
    """Over-reporting providers claim this many seconds more than elapsed in every report."""


@dataclass(frozen=True)
class StopPaying:
    fraction: float = 0.0
    after_min_receipts: int = 3
    after_max_receipts: int = 60
    """Such renters sign this many receipts of a job (drawn per renter), then no more."""


@dataclass(frozen=True)
class Faults:
    loss: float = 0.0
    delay_min_ms: int = 0
    delay_max_ms: int = 0
    partitions: tuple[Partition, ...] = ()
    crashes: Crashes = Crashes()
    churn: Churn = Churn()
    over_report: OverReport = OverReport()
    stop_paying: StopPaying = StopPaying()

    @property
    def any(self) -> bool:
        return self != Faults()


@dataclass(frozen=True)
class Shock:
    """From ``at_s`` for ``duration_s`` (0: for good), ``change`` x the providers of ``model``
    (all models when empty) leave (``change < 0``) or join (``change > 0``)."""

    at_s: int
    change: float
    duration_s: int = 0
    model: str = ""


@dataclass(frozen=True)
class MarketSpec:
    """Market-mode knobs."""

    demand_window_s: int = 3600
    """Agreements of this recent window are the demand of the multiplier."""


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: int
    providers: ProvidersSpec
    renters: RentersSpec
    jobs: JobsSpec
    description: str = ""
    seed: int = 0
    sample_interval_s: int = 300
    settlement: SettlementSpec = SettlementSpec()
    chain: ChainSpec = ChainSpec()
    faults: Faults = Faults()
    shocks: tuple[Shock, ...] = ()
    market: MarketSpec = MarketSpec()

    @property
    def nodes(self) -> int:
        return self.providers.count + self.renters.count

    @property
    def models(self) -> tuple[str, ...]:
        """GPU models of the mix, in first-seen order."""
        return tuple(dict.fromkeys(entry.model for entry in self.providers.gpus))
