"""The node-level simulation: the real node roles, many nodes, one virtual clock.

Every provider is a real :class:`dgpu.node.provider.Provider` (negotiation, funding
checks, metering, receipt storage, settlement) and every renter a real
:class:`dgpu.node.renter.Renter` (discovery, negotiation, funding, receipt signing,
reclaim), each with its own :class:`~dgpu.node.net.memory.MemoryNetwork` endpoint and an
in-memory store that survives its crashes; providers have simulated GPUs and the virtual
executor. Money moves through the escrow (:mod:`.chain`). Faults come from the scenario:
link delay and loss on the hub, partitions, crashes and restarts, churn, over-reporting
providers, renters that stop paying, a coordinator down or censoring.

The run: arrivals for ``duration_s``; then every job is let finish, receipts are settled
(coordinator batch, then each provider settling what is left itself, as ``dgpu provider
settle`` does), time moves past every channel's expiry and dispute window, and renters
reclaim what is left. :mod:`.accounting` then checks the money.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import trio
from dgpu.node.net.memory import (
    Faults,
    MemoryHubConfig,
    open_memory_hub,
    open_memory_network,
)
from dgpu.node.provider import Provider, settle_on_chain
from dgpu.node.renter import JobRefused, NoMatchingOffer, Renter, reclaim_channels
from dgpu.pricing import percentile, reference_price
from dgpu.pricing.units import BPS_DENOMINATOR, ceil_div
from dgpu.protocol.errors import DgpuError
from dgpu.protocol.negotiation import JobSpec, new_job_id
from dgpu.simulations.market.engine import draw_duration
from dgpu.simulations.nodes.accounting import Holdings, read_holdings
from dgpu.simulations.nodes.chain import DISPUTE_WINDOW_S, SimChain, open_chain
from dgpu.simulations.nodes.desk import Rental, SimCoordinator, SimIndex
from dgpu.simulations.nodes.population import (
    ProviderNode,
    RenterNode,
    make_providers,
    make_renters,
)
from dgpu.simulations.nodes.work import WorkLog
from dgpu.simulations.rng import Streams, poisson_gap, weighted_choice
from dgpu.simulations.scenario import Scenario

log = logging.getLogger(__name__)

Progress = Callable[[float], None]
JOB_IMAGE = "dgpu/sim:virtual"
OFFERS_TRIED = 3
WIND_DOWN_S = 120
RECLAIM_EVERY_S = 600


@dataclass
class Sample:
    t: int
    busy: dict[str, int]
    online: dict[str, int]
    ask: dict[str, int | None]
    multiplier_bps: dict[str, int]


@dataclass
class FaultLog:
    crashes: int = 0
    restarts: int = 0
    leaves: int = 0
    partitions: list[tuple[int, int, int]] = field(default_factory=list)
    """(at_s, duration_s, nodes cut off)."""


@dataclass
class Tally:
    requested: int = 0
    skipped_offline: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    """How each job ended for its renter: a final state, ``unmatched``, ``aborted``
    (the provider vanished), ``lost`` (the renter itself crashed or left)."""
    disputes: int = 0
    """Usage reports the renters refused to pay."""


class NodeSimulation:
    def __init__(self, scenario: Scenario, seed: int, progress: Progress | None = None) -> None:
        self.sc = scenario
        self.seed = seed
        self.streams = Streams(seed)
        self.progress = progress
        self.work = WorkLog()
        self.tally = Tally()
        self.faults = FaultLog()
        self.samples: list[Sample] = []
        self.providers: list[ProviderNode] = []
        self.renters: list[RenterNode] = []
        self.running = 0
        self.arrivals_open = True
        self.all_done = trio.Event()
        self._mix: list[tuple[str, int]] = []
        self.held: Holdings | None = None

    # -- the run ------------------------------------------------------------------------

    async def run(self) -> None:
        net = self.sc.faults
        config = MemoryHubConfig(
            faults=Faults(
                latency_s=net.delay_min_ms / 1000,
                jitter_s=(net.delay_max_ms - net.delay_min_ms) / 1000,
                loss=net.loss,
            )
        )
        async with open_memory_hub(config, rng=self.streams.get("network")) as hub:
            self.hub = hub
            self.chain: SimChain = await open_chain(self.sc, hub.now)
            self.providers = make_providers(
                self.sc,
                self.streams,
                self.work,
                mint=self.chain.mint,
                program_id=self.chain.program_id,
            )
            self.renters = make_renters(
                self.sc, self.streams, mint=self.chain.mint, program_id=self.chain.program_id
            )
            # Jobs ask for the models present, in proportion to their GPUs.
            gpus: dict[str, int] = {}
            for provider in self.providers:
                gpus[provider.model] = gpus.get(provider.model, 0) + provider.gpus
            self._mix = [(m, gpus[m]) for m in self.sc.models if m in gpus]
            await self.chain.fund(
                [r.identity for r in self.renters],
                [*(p.identity for p in self.providers), self.chain.coordinator],
                self.sc.renters.balance,
            )
            self.desk = SimCoordinator(
                self.sc.settlement,
                identity=self.chain.coordinator,
                escrow=self.chain.escrow(),
                censored=frozenset(p.identity.public_key for p in self.providers if p.censored),
                clock=hub.now,
                demand_window_s=self.sc.market.demand_window_s,
            )
            async with trio.open_nursery() as nursery:
                for provider in self.providers:
                    nursery.start_soon(self._provider_lives, provider)
                for renter in self.renters:
                    nursery.start_soon(self._renter_lives, renter)
                    nursery.start_soon(self._arrivals, renter)
                nursery.start_soon(self.desk.run_batcher)
                nursery.start_soon(self._sampler)
                nursery.start_soon(self._repricer)
                nursery.start_soon(self._partitions)
                nursery.start_soon(self._crashes)
                nursery.start_soon(self._churn)
                if self.progress is not None:
                    nursery.start_soon(self._report_progress, self.progress)
                await trio.sleep_until(self.sc.duration_s)
                self.arrivals_open = False
                if self.running:
                    await self.all_done.wait()
                await self._wind_down()
                self.held = await read_holdings(self)
                nursery.cancel_scope.cancel()

    async def _wind_down(self) -> None:
        """Every node back; settle everything; stop the nodes; let every channel expire
        (time is free now that nothing runs) and have the renters reclaim the rest."""
        self.hub.heal()
        for node in self._all_nodes():
            if not node.life.online:
                node.life.start()
        await trio.sleep(WIND_DOWN_S)
        await self.desk.flush()
        for provider in self.providers:
            await self._settle_everything(provider)
        for node in self._all_nodes():
            node.life.stop()
        latest = max(
            (r.expiry + DISPUTE_WINDOW_S for r in self.chain.log.channels.values()),
            default=self.hub.now(),
        )
        await trio.sleep(max(0, latest - self.hub.now()) + 1)
        for renter in self.renters:
            await reclaim_channels(
                renter.store, self.chain.escrow(), renter.identity, now=self.hub.now
            )

    # -- node lives -------------------------------------------------------------------

    async def _provider_lives(self, node: ProviderNode) -> None:
        while True:
            while not node.life.online:
                await node.life.wake.wait()
            node.life.lives += 1
            async with open_memory_network(self.hub, node.identity) as net:
                with trio.CancelScope() as scope:
                    node.life.scope = scope
                    node.role = Provider(
                        identity=node.identity,
                        config=node.config,
                        network=net,
                        escrow=self.chain.escrow(),
                        executor=node.executor,
                        gpu_backend=node.backend,
                        store=node.store,
                        desk=self.desk,
                    )
                    async with trio.open_nursery() as nursery:
                        await nursery.start(node.role.run)
                        await _until_cancelled()
            node.role = None
            node.life.scope = None
            node.life.online = False

    async def _renter_lives(self, node: RenterNode) -> None:
        while True:
            while not node.life.online:
                await node.life.wake.wait()
            node.life.lives += 1
            async with open_memory_network(self.hub, node.identity) as net:
                with trio.CancelScope() as scope:
                    node.life.scope = scope
                    node.role = Renter(
                        identity=node.identity,
                        config=node.config,
                        network=net,
                        escrow=self.chain.escrow(),
                        store=node.store,
                        index=SimIndex(self.desk),
                    )
                    async with trio.open_nursery() as nursery:
                        node.nursery = nursery
                        nursery.start_soon(self._reclaim_loop, node.role)
                        await _until_cancelled()
            node.role, node.nursery = None, None
            node.life.scope = None
            node.life.online = False

    async def _reclaim_loop(self, renter: Renter) -> None:
        while True:
            await trio.sleep(RECLAIM_EVERY_S)
            await renter.reclaim()

    # -- jobs -------------------------------------------------------------------------

    async def _arrivals(self, node: RenterNode) -> None:
        rng = self.streams.get(f"arrivals/{node.index}")
        rate = self.sc.jobs.per_renter_per_hour / 3600
        while True:
            gap = poisson_gap(rng, rate)
            if trio.current_time() + gap >= self.sc.duration_s:
                return
            await trio.sleep(gap)
            model = weighted_choice(rng, self._mix)
            largest = max(p.gpus for p in self.providers if p.model == model)
            count = weighted_choice(
                rng, [(c, w) for c, w in self.sc.jobs.gpu_count if c <= largest] or [(1, 1)]
            )
            duration = draw_duration(rng, self.sc)
            markup = rng.randint(
                self.sc.jobs.max_price_markup_min_bps, self.sc.jobs.max_price_markup_max_bps
            )
            node.jobs += 1
            if not node.life.online or node.nursery is None or node.role is None:
                self.tally.skipped_offline += 1
                continue
            self.tally.requested += 1
            self.running += 1
            node.nursery.start_soon(
                self._job, node, node.role, model, count, duration, markup, node.jobs
            )

    async def _job(
        self,
        node: RenterNode,
        renter: Renter,
        model: str,
        count: int,
        duration: int,
        markup: int,
        number: int,
    ) -> None:
        outcome = "lost"
        try:
            reference = self._reference(model)
            spec = JobSpec(
                image=JOB_IMAGE,
                command=("sh", "-c", f"echo simulated job; sleep {duration}"),
                gpu_model=model,
                gpu_count=count,
                max_duration_s=min(self.sc.jobs.max_duration_s, duration + duration // 4 + 60),
                max_price_per_gpu_second=ceil_div(
                    reference * (BPS_DENOMINATOR + markup), BPS_DENOMINATOR
                ),
            )
            job_id = new_job_id(f"{node.label}/{number}".encode())
            for attempt in range(self.sc.jobs.retries + 1):
                if attempt:
                    await trio.sleep(self.sc.jobs.retry_after_s)
                try:
                    result = await renter.run_job(spec, job_id=job_id)
                except (NoMatchingOffer, JobRefused) as exc:
                    outcome = "unmatched"
                    log.info("%s: no provider took job %d: %s", node.label, number, exc)
                    continue
                except DgpuError as exc:
                    outcome = "failed_to_start"
                    log.info("%s: job %d failed: %s", node.label, number, exc)
                    break
                outcome = result.state
                self.tally.disputes += len(result.disputes)
                if self.desk.up:
                    self.desk.record_rental(Rental(model, count), self.hub.now())
                break
        finally:
            self.tally.outcomes[outcome] = self.tally.outcomes.get(outcome, 0) + 1
            self.running -= 1
            if not self.arrivals_open and self.running == 0:
                self.all_done.set()

    def _reference(self, model: str) -> int:
        if self.desk.up:
            return self.desk.prices(self.hub.now())[model].price_per_gpu_second
        return reference_price(model, demand_gpus=0, supply_gpus=0).price_per_gpu_second

    # -- the operators' part ----------------------------------------------------------

    async def _repricer(self) -> None:
        """Providers follow the coordinator's multiplier for their model."""
        while True:
            await trio.sleep(self.sc.providers.pricing.reprice_s)
            if not self.desk.up:
                continue
            prices = self.desk.prices(self.hub.now())
            for node in self.providers:
                node.config = replace(node.config, multiplier_bps=prices[node.model].multiplier_bps)
                if node.role is not None:
                    node.role.config = node.config

    async def _settle_everything(self, node: ProviderNode) -> None:
        """What an operator does before shutting a provider down (``dgpu provider
        settle``): submit every receipt still unpaid."""
        if not node.store.unsettled_receipts():
            return
        try:
            await settle_on_chain(node.store, self.chain.escrow(), node.identity, now=self.hub.now)
        except DgpuError as exc:
            log.info("%s could not settle: %s", node.label, exc)

    # -- faults -------------------------------------------------------------------------

    def _all_nodes(self) -> list[ProviderNode | RenterNode]:
        return [*self.providers, *self.renters]

    async def _partitions(self) -> None:
        rng = self.streams.get("partitions")
        parts = [p for p in self.sc.faults.partitions if p.at_s < self.sc.duration_s]
        for part in sorted(parts, key=lambda p: p.at_s):
            await trio.sleep_until(part.at_s)
            nodes = self._all_nodes()
            cut = rng.sample(nodes, round(part.fraction * len(nodes)))
            self.hub.partition([n.identity.peer_id for n in cut])
            self.faults.partitions.append((part.at_s, part.duration_s, len(cut)))
            await trio.sleep(part.duration_s)
            self.hub.heal()

    async def _crashes(self) -> None:
        crashes = self.sc.faults.crashes
        nodes = self._all_nodes()
        rng = self.streams.get("crashes")
        rate = crashes.per_node_per_day * len(nodes) / 86_400
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(poisson_gap(rng, rate))
                if trio.current_time() >= self.sc.duration_s:
                    return
                node = nodes[rng.randrange(len(nodes))]
                down = rng.randint(crashes.restart_min_s, crashes.restart_max_s)
                if node.life.online:
                    self.faults.crashes += 1
                    node.life.online = False
                    node.life.wake = trio.Event()
                    self.hub.crash(node.identity.peer_id)
                    nursery.start_soon(self._restart_after, node, down)

    async def _churn(self) -> None:
        churn = self.sc.faults.churn
        rng = self.streams.get("churn")
        rate = churn.per_provider_per_day * len(self.providers) / 86_400
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(poisson_gap(rng, rate))
                if trio.current_time() >= self.sc.duration_s:
                    return
                node = self.providers[rng.randrange(len(self.providers))]
                away = rng.randint(churn.offline_min_s, churn.offline_max_s)
                if node.life.online:
                    self.faults.leaves += 1
                    node.life.stop()
                    nursery.start_soon(self._restart_after, node, away)

    async def _restart_after(self, node: ProviderNode | RenterNode, delay: int) -> None:
        await trio.sleep(delay)
        self.faults.restarts += 1
        node.life.start()

    # -- observation ------------------------------------------------------------------

    async def _sampler(self) -> None:
        step = self.sc.sample_interval_s
        t = 0
        while t <= self.sc.duration_s:
            await trio.sleep_until(t)
            self.samples.append(self._sample(t))
            t += step

    def _sample(self, t: int) -> Sample:
        models = self.sc.models
        online = dict.fromkeys(models, 0)
        asks: dict[str, list[tuple[int, int]]] = {m: [] for m in models}
        for node in self.providers:
            if node.life.online and node.role is not None:
                online[node.model] += node.gpus
                offer = node.role.offer
                if offer is not None and offer.expires_at > self.hub.now():
                    asks[node.model].append((offer.price_per_gpu_second, offer.gpu_count))
        busy = self.work.busy_gpus()
        prices = self.desk.prices(self.hub.now()) if self.desk.up else {}
        return Sample(
            t=t,
            busy={m: busy.get(m, 0) for m in models},
            online=online,
            ask={m: percentile(asks[m], 50) if asks[m] else None for m in models},
            multiplier_bps={
                m: prices[m].multiplier_bps if m in prices else BPS_DENOMINATOR for m in models
            },
        )

    async def _report_progress(self, progress: Progress) -> None:
        step = max(1.0, self.sc.duration_s / 100)
        while True:
            progress(min(1.0, trio.current_time() / self.sc.duration_s))
            await trio.sleep(step)


async def _until_cancelled() -> None:
    """Park a node's life until its scope is cancelled (crash, leave, end of run)."""
    await trio.sleep_forever()
