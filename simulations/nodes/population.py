"""The nodes of a node-level simulation: who they are and what they keep across restarts.

A provider keeps its identity, its simulated GPUs, its store (an in-memory sqlite
:class:`~dgpu.node.store.NodeStore`: its disk, which survives crashes) and its config;
a renter keeps its identity and its store too. Each life of a
node (between a start and a crash or leave) gets a fresh network endpoint and a fresh
role object, as a restarted process would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from dgpu.node.config import ProviderConfig, ProviderFaults, RenterConfig, RenterFaults
from dgpu.node.gpu import SimulatedBackend, SimulatedConfig, SimulatedGpuSpec
from dgpu.node.provider import Provider
from dgpu.node.renter import Renter
from dgpu.node.store import NodeStore
from dgpu.pricing import ProviderPricing
from dgpu.protocol.identity import Identity
from dgpu.simulations.nodes.work import TimedExecutor, WorkLog
from dgpu.simulations.rng import Streams, stepped, weighted_choice
from dgpu.simulations.scenario import Scenario


@dataclass
class Life:
    """Whether a node runs, and how to end its current life."""

    online: bool = True
    scope: trio.CancelScope | None = None
    wake: trio.Event = field(default_factory=trio.Event)
    lives: int = 0

    def start(self) -> None:
        self.online = True
        self.wake.set()

    def stop(self) -> None:
        self.online = False
        self.wake = trio.Event()
        if self.scope is not None:
            self.scope.cancel()


@dataclass
class ProviderNode:
    index: int
    identity: Identity
    model: str
    gpus: int
    backend: SimulatedBackend
    store: NodeStore
    executor: TimedExecutor
    config: ProviderConfig
    censored: bool
    life: Life = field(default_factory=Life)
    role: Provider | None = None

    @property
    def label(self) -> str:
        return f"provider-{self.index:03d}"


@dataclass
class RenterNode:
    index: int
    identity: Identity
    store: NodeStore
    config: RenterConfig
    life: Life = field(default_factory=Life)
    jobs: int = 0
    role: Renter | None = None
    nursery: trio.Nursery | None = None

    @property
    def stop_signing_after(self) -> int | None:
        return self.config.faults.stop_signing_after

    @property
    def label(self) -> str:
        return f"renter-{self.index:03d}"


def make_providers(
    scenario: Scenario, streams: Streams, work: WorkLog, *, mint: bytes, program_id: bytes
) -> list[ProviderNode]:
    rng = streams.get("population")
    policy = scenario.providers.pricing
    faults = scenario.faults
    nodes: list[ProviderNode] = []
    for index in range(scenario.providers.count):
        entry = weighted_choice(rng, [(e, e.weight) for e in scenario.providers.gpus])
        markup = stepped(rng, policy.markup_min_bps, policy.markup_max_bps, policy.markup_step_bps)
        over = rng.random() < faults.over_report.fraction
        censored = rng.random() < scenario.settlement.censored_fraction
        backend = SimulatedBackend(
            SimulatedConfig((SimulatedGpuSpec(entry.model, entry.per_node),), seed=index)
        )
        config = ProviderConfig(
            mint=mint,
            program_id=program_id,
            pricing=ProviderPricing(policy.floor_per_gpu_second, markup),
            max_duration_s=scenario.providers.max_duration_s,
            interval_s=scenario.providers.interval_s,
            grace_s=scenario.providers.grace_s,
            offer_ttl_s=scenario.providers.offer_ttl_s,
            self_settle_after_s=scenario.settlement.self_settle_after_s,
            faults=ProviderFaults(over_report_s=faults.over_report.seconds if over else 0),
        )
        nodes.append(
            ProviderNode(
                index=index,
                identity=Identity.from_label(f"sim/provider/{index}"),
                model=entry.model,
                gpus=entry.per_node,
                backend=backend,
                store=NodeStore.open(":memory:"),
                executor=TimedExecutor(work, backend),
                config=config,
                censored=censored,
            )
        )
    return nodes


def make_renters(
    scenario: Scenario, streams: Streams, *, mint: bytes, program_id: bytes
) -> list[RenterNode]:
    rng = streams.get("population")
    stop = scenario.faults.stop_paying
    nodes: list[RenterNode] = []
    for index in range(scenario.renters.count):
        stops = rng.random() < stop.fraction
        after = rng.randint(stop.after_min_receipts, stop.after_max_receipts) if stops else None
        nodes.append(
            RenterNode(
                index=index,
                identity=Identity.from_label(f"sim/renter/{index}"),
                store=NodeStore.open(":memory:"),
                config=RenterConfig(
                    mint=mint,
                    program_id=program_id,
                    faults=RenterFaults(stop_signing_after=after),
                ),
            )
        )
    return nodes
